//! Compact terminal tables.

use super::{LayerOutcome, LayerReport, WeightFigures};
use crate::plan::PlanEntry;

/// `64x3x7x7`, or `scalar` for a 0-d tensor.
pub fn shape(dims: &[usize]) -> String {
    if dims.is_empty() {
        return "scalar".into();
    }
    dims.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

fn sci(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.3e}"))
}

/// Renders columns; `right[i]` right-aligns column `i` (figures), others are left-aligned.
pub fn render(header: &[&str], right: &[bool], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            if right[i] {
                s.push_str(&format!("{cell:>w$}"));
            } else {
                s.push_str(&format!("{cell:<w$}"));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

/// Layer, shape, loss before → after, reduction, norm ratio: one row per conv tensor.
pub fn layer_table(layers: &[LayerReport]) -> String {
    let rows: Vec<Vec<String>> = layers
        .iter()
        .map(|l| {
            let loss = |f: Option<&WeightFigures>| f.map(|f| f.metrics.loss);
            let change = match &l.outcome {
                LayerOutcome::Optimized { before, after, .. } => {
                    format!("{} -> {}", sci(loss(Some(before))), sci(loss(Some(after))))
                }
                LayerOutcome::Skipped { reason } => format!("skipped: {reason}"),
                LayerOutcome::Diverged { reason, .. } => format!("diverged: {reason}"),
            };
            vec![
                l.name.clone(),
                shape(&l.shape),
                change,
                l.reduction_percent()
                    .map_or("-".into(), |r| format!("{r:.1}%")),
                l.norm_ratio()
                    .map_or("-".into(), |n| format!("{:.3}", n.mean)),
                match (
                    l.before().and_then(|f| f.feature_cosine),
                    l.after().and_then(|f| f.feature_cosine),
                ) {
                    (Some(b), Some(a)) => format!("{b:.3} -> {a:.3}"),
                    _ => "-".into(),
                },
            ]
        })
        .collect();
    render(
        &[
            "layer",
            "shape",
            "L_CS before -> after",
            "reduction",
            "norm ratio",
            "feature-map |cos|",
        ],
        &[false, true, false, true, true, true],
        &rows,
    )
}

/// One row per tensor: whether it will be optimized and why.
pub fn plan_table(entries: &[PlanEntry]) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.name.clone(),
                shape(&e.shape),
                e.dtype.clone(),
                if e.optimize {
                    "optimize".into()
                } else {
                    "keep".into()
                },
                e.reason.clone(),
            ]
        })
        .collect();
    render(
        &["tensor", "shape", "dtype", "action", "why"],
        &[false, true, false, false, false],
        &rows,
    )
}
