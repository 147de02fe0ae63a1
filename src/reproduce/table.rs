//! Tables 1, 3 and 6: which objective and feature maps each uses, and running its rows.

use super::paper::{PaperRow, TABLE1, TABLE3, TABLE6};
use super::{run_episodes, Figures, Objective, Optimizer, Padding, RowSetup, Similarity};

/// One of the paper's 1-D experiments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Section 3.1: minimizing kernel similarity `<K1,K2>²`, full cross-correlation.
    Table1,
    /// Section 4.1 (Tables 2 and 3): minimizing `||K1 ⊛ K2||²`, full cross-correlation.
    Table3,
    /// Appendix 6.1: minimizing `||K1 ⊛ K2||²`, valid cross-correlation.
    Table6,
}

/// How the rows are run; the defaults are the paper's protocol.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Protocol {
    /// Episodes per row (the paper: 1000).
    pub episodes: usize,
    pub seed: u64,
    pub similarity: Similarity,
}

impl Default for Protocol {
    fn default() -> Self {
        Self {
            episodes: 1000,
            seed: 0,
            similarity: Similarity::Inner,
        }
    }
}

/// Our figures for one row next to the paper's.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RowResult {
    pub table: &'static str,
    pub n: usize,
    pub optimizer: Optimizer,
    #[serde(flatten)]
    pub ours: Figures,
    pub paper: Figures,
    /// Episodes whose kernels diverged (see [`Figures::summarize`]); in JSON only when non-zero.
    #[serde(skip_serializing_if = "is_zero")]
    pub diverged: usize,
}

fn is_zero(count: &usize) -> bool {
    *count == 0
}

impl Table {
    pub const ALL: [Table; 3] = [Table::Table1, Table::Table3, Table::Table6];

    /// `table1`, `table3` or `table6`.
    pub fn name(self) -> &'static str {
        match self {
            Table::Table1 => "table1",
            Table::Table3 => "table3",
            Table::Table6 => "table6",
        }
    }

    /// A one-line description.
    pub fn caption(self) -> &'static str {
        match self {
            Table::Table1 => {
                "Table 1: minimizing kernel similarity <K1,K2>^2, full cross-correlation (Table 7)"
            }
            Table::Table3 => {
                "Tables 2/3: minimizing ||K1 * K2||^2, full cross-correlation (Table 8)"
            }
            Table::Table6 => "Table 6: minimizing ||K1 * K2||^2, valid cross-correlation (Table 9)",
        }
    }

    pub fn objective(self) -> Objective {
        match self {
            Table::Table1 => Objective::KernelSimilarity,
            Table::Table3 | Table::Table6 => Objective::ConvSimilarity,
        }
    }

    /// The padding of the feature maps whose similarity is measured.
    pub fn padding(self) -> Padding {
        match self {
            Table::Table1 | Table::Table3 => Padding::Full,
            Table::Table6 => Padding::Valid,
        }
    }

    /// The paper's rows, with their hyper-parameters.
    pub fn paper_rows(self) -> &'static [PaperRow] {
        match self {
            Table::Table1 => &TABLE1,
            Table::Table3 => &TABLE3,
            Table::Table6 => &TABLE6,
        }
    }

    /// Runs one row.
    pub fn run_row(self, row: &PaperRow, settings: &Protocol) -> RowResult {
        let pad = self
            .padding()
            .amount(row.n)
            .expect("full and valid padding exist for every kernel size");
        let episodes = run_episodes(&RowSetup {
            n: row.n,
            objective: self.objective(),
            pad,
            similarity: settings.similarity,
            optimizer: row.optimizer,
            lr: row.lr,
            iterations: row.iterations,
            episodes: settings.episodes,
            seed: settings.seed,
        });
        RowResult {
            table: self.name(),
            n: row.n,
            optimizer: row.optimizer,
            ours: Figures::summarize(&episodes),
            paper: row.figures,
            diverged: episodes.iter().filter(|e| e.diverged()).count(),
        }
    }

    /// Runs every row, in the paper's order.
    pub fn run(self, settings: &Protocol) -> Vec<RowResult> {
        self.paper_rows()
            .iter()
            .map(|row| self.run_row(row, settings))
            .collect()
    }
}
