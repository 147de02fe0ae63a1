//! The paper's numerical experiments, re-run: the 1-D tables of Sections 3.1 and 4.1 and of
//! Appendix 6.1, and the identity (Equation 3) they rest on, checked in 2-D with channels.
//!
//! - [`Table`]: Tables 1, 3 and 6, each row a batch of episodes ([`run_episodes`]) summarized into
//!   [`Figures`] next to the paper's ([`paper`]).
//! - [`Objective`]: what a row minimizes, `<K1,K2>²` or `||K1 ⊛ K2||²`, with analytic gradients.
//! - [`Similarity`], [`Padding`]: how the feature maps of an episode are compared.
//! - [`identity`], [`padding`]: Equation 3 in 2-D, and how far Appendix 6.1's approximation is off
//!   for `same` and `valid` padding.
//! - [`text`]: the terminal tables of `cs-init reproduce`.
//!
//! docs/reproduction.md has the results and the reading of the paper's undefined details.
//!
//! ```
//! use cs_init::reproduce::{Protocol, Table};
//!
//! let settings = Protocol { episodes: 20, ..Protocol::default() };
//! let rows = Table::Table3.run(&settings);
//! assert_eq!(rows.len(), 6);
//! assert!(rows.iter().all(|r| r.ours.reduction_frequency > 90.0));
//! ```

mod correlation;
mod episodes;
mod feature_map;
mod figures;
pub mod identity;
mod objective;
pub mod padding;
pub mod paper;
mod table;
pub mod text;

pub use episodes::{run_episodes, Episode, Optimizer, RowSetup, INPUT_SIZE};
pub use feature_map::{window_gram, Padding, Similarity};
pub use figures::Figures;
pub use objective::Objective;
pub use padding::{padding_error, padding_table, PaddingError};
pub use table::{Protocol, RowResult, Table};
