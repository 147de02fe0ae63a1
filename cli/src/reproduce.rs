//! `cs-init reproduce`: the paper's 1-D experiments (Tables 1, 3, 6) and the Appendix 6.1
//! padding measurement, each figure printed next to the paper's.

use std::time::Instant;

use clap::{Args, ValueEnum};

use super::output::Exit;
use cs_init::reproduce::text::{render_padding, render_table};
use cs_init::reproduce::{padding_table, Protocol, Similarity, Table};

#[derive(Debug, Args)]
pub struct ReproduceArgs {
    /// Which experiment: one table, all three, or the Appendix 6.1 padding error (2-D).
    #[arg(value_enum, value_name = "TARGET")]
    target: Target,

    /// Episodes per table row (the paper: 1000); for `padding`, random draws per cell.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    episodes: usize,

    /// Seed of the random inputs and kernels.
    #[arg(long, default_value_t = 0, value_name = "S")]
    seed: u64,

    /// How feature maps are compared: inner product <F1,F2> (the paper's Equation 3), cosine
    /// (scale-free) or squared inner product <F1,F2>^2. Tables only.
    #[arg(long, value_enum, default_value_t = SimilarityArg::Inner)]
    similarity: SimilarityArg,

    /// Print one compact JSON object per row (JSON lines) instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Target {
    /// Minimizing kernel similarity <K1,K2>^2 (Section 3.1).
    Table1,
    /// Minimizing the Convolutional Similarity, full cross-correlation (Section 4.1, Tables 2/3).
    Table3,
    /// Minimizing the Convolutional Similarity, valid cross-correlation (Appendix 6.1).
    Table6,
    /// Tables 1, 3 and 6.
    All,
    /// Relative error of Equation 20 for same and valid padding in 2-D (Appendix 6.1).
    Padding,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SimilarityArg {
    Inner,
    Cosine,
    Squared,
}

pub fn run(args: ReproduceArgs, quiet: bool) -> anyhow::Result<Exit> {
    anyhow::ensure!(args.episodes > 0, "--episodes must be at least 1");
    let started = Instant::now();
    match args.target {
        Target::Table1 => print_tables(&[Table::Table1], &args)?,
        Target::Table3 => print_tables(&[Table::Table3], &args)?,
        Target::Table6 => print_tables(&[Table::Table6], &args)?,
        Target::All => print_tables(&Table::ALL, &args)?,
        Target::Padding => print_padding(&args)?,
    }
    // On stderr, so that stdout stays the tables or JSON lines.
    if !quiet {
        eprintln!("reproduce: {:.1} s", started.elapsed().as_secs_f64());
    }
    Ok(Exit::Success)
}

fn print_tables(tables: &[Table], args: &ReproduceArgs) -> anyhow::Result<()> {
    let settings = Protocol {
        episodes: args.episodes,
        seed: args.seed,
        similarity: match args.similarity {
            SimilarityArg::Inner => Similarity::Inner,
            SimilarityArg::Cosine => Similarity::Cosine,
            SimilarityArg::Squared => Similarity::Squared,
        },
    };
    if !args.json {
        println!(
            "{} episodes per row, seed {}, feature-map similarity: {}\n",
            settings.episodes,
            settings.seed,
            match settings.similarity {
                Similarity::Inner => "|<F1,F2>|",
                Similarity::Cosine => "|cos(F1,F2)|",
                Similarity::Squared => "<F1,F2>^2",
            }
        );
    }
    for (i, &table) in tables.iter().enumerate() {
        let rows = table.run(&settings);
        if args.json {
            for row in &rows {
                println!("{}", serde_json::to_string(row)?);
            }
        } else {
            if i > 0 {
                println!();
            }
            print!("{}", render_table(table, &rows));
        }
    }
    Ok(())
}

fn print_padding(args: &ReproduceArgs) -> anyhow::Result<()> {
    let errors = padding_table(args.episodes, args.seed)?;
    if args.json {
        for e in &errors {
            println!("{}", serde_json::to_string(e)?);
        }
    } else {
        print!("{}", render_padding(&errors));
    }
    Ok(())
}
