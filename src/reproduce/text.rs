//! The terminal tables of `cs-init reproduce`: every cell shows our value next to the paper's.

use super::{PaddingError, RowResult, Table};

/// A value as the paper prints it: scientific beyond 10^4 (its increases reach 10^6), else fixed.
fn figure(value: f64, decimals: usize) -> String {
    if value.abs() >= 1e4 {
        format!("{value:.2e}")
    } else {
        format!("{value:.decimals$}")
    }
}

/// Left-aligned first columns, right-aligned figures, two spaces between columns.
fn render(header: &[&str], rows: &[Vec<String>], left: usize) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<String>| {
        let cells: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, &w))| {
                if i < left {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        cells.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

/// One of Tables 1, 3, 6: caption, then per row `ours / paper` in every figure column.
pub fn render_table(table: Table, rows: &[RowResult]) -> String {
    let header = [
        "N",
        "optimizer",
        "corr mean",
        "corr std",
        "reduction %",
        "decrease mean %",
        "decrease std",
        "increase mean %",
        "increase std",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let (o, p) = (r.ours, r.paper);
            let pair = |ours: f64, paper: f64, decimals: usize| {
                format!("{} / {}", figure(ours, decimals), figure(paper, decimals))
            };
            vec![
                r.n.to_string(),
                r.optimizer.name().to_string(),
                pair(o.corr_mean, p.corr_mean, 3),
                pair(o.corr_std, p.corr_std, 3),
                pair(o.reduction_frequency, p.reduction_frequency, 1),
                pair(o.decrease_mean, p.decrease_mean, 2),
                pair(o.decrease_std, p.decrease_std, 2),
                pair(o.increase_mean, p.increase_mean, 2),
                pair(o.increase_std, p.increase_std, 2),
            ]
        })
        .collect();
    let mut out = format!(
        "{} (each cell: ours / paper)\n{}",
        table.caption(),
        render(&header, &cells, 2)
    );
    for r in rows.iter().filter(|r| r.diverged > 0) {
        out.push_str(&format!(
            "N = {} {}: {} episode(s) diverged; counted as not reduced, \
             left out of the other figures\n",
            r.n,
            r.optimizer.name(),
            r.diverged
        ));
    }
    out
}

/// The Appendix 6.1 measurement: one row per padding and kernel size, one column per input size,
/// each cell `mean relative error (median)` in percent. `errors` come in [`super::padding_table`]'s
/// order: grouped by padding, then kernel size, input sizes ascending.
pub fn render_padding(errors: &[PaddingError]) -> String {
    let mut inputs: Vec<usize> = errors.iter().map(|e| e.input).collect();
    inputs.sort_unstable();
    inputs.dedup();
    let mut rows: Vec<Vec<String>> = Vec::new();
    for e in errors {
        let key = [e.padding.name().to_string(), e.kernel.to_string()];
        if rows.last().is_none_or(|r| r[..2] != key) {
            rows.push(key.to_vec());
        }
        rows.last_mut().expect("a row was pushed").push(format!(
            "{:.2} ({:.2})",
            100.0 * e.mean_relative_error,
            100.0 * e.median_relative_error
        ));
    }
    let titles: Vec<String> = inputs.iter().map(|i| format!("input {i}x{i}")).collect();
    let mut header = vec!["padding", "kernel"];
    header.extend(titles.iter().map(String::as_str));
    format!(
        "Appendix 6.1: relative error % of Equation 20, mean (median) over draws\n{}",
        render(&header, &rows, 2)
    )
}
