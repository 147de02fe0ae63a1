//! Tables and plots of a sweep's records: figures averaged over seeds (with their range), the
//! change of the probe's figures against iterations on a log axis, one line per learning rate
//! and norm mode.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cs_init::report::plot::{Axes, Scale, Series};
use cs_init::Variant;

use super::{probe_key, AccuracyRecord, IdentityRecord, Input, ProbeChange, Record, Subject};
use cs_init::probe::ProbePadding;

/// Reads JSON lines of `T`, naming the file and line of a bad one.
pub fn read_lines<T: serde::de::DeserializeOwned>(paths: &[PathBuf]) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            out.push(
                serde_json::from_str(line)
                    .with_context(|| format!("{}:{}: not a record", path.display(), number + 1))?,
            );
        }
    }
    Ok(out)
}

/// The records of one setting, over its seeds.
pub struct Group<'a> {
    pub subject: Subject,
    pub variant: Variant,
    pub lr: Option<f64>,
    pub keep_norm: Option<bool>,
    pub iters: usize,
    pub records: Vec<&'a Record>,
}

impl Group<'_> {
    /// A figure of every seed's record, summarized.
    pub fn stat(&self, figure: impl Fn(&Record) -> Option<f64>) -> Stat {
        Stat::of(self.records.iter().filter_map(|r| figure(r)))
    }

    /// A probe figure of every seed's record.
    pub fn probe(&self, key: &str, figure: impl Fn(&ProbeChange) -> f64) -> Stat {
        self.stat(|r| r.probe.get(key).map(&figure))
    }
}

/// Records grouped by setting, in the order they first appear.
pub fn groups(records: &[Record]) -> Vec<Group<'_>> {
    let mut groups: Vec<Group> = Vec::new();
    for record in records {
        let same = |g: &Group| {
            g.subject == record.subject
                && g.variant == record.variant
                && g.lr == record.lr
                && g.keep_norm == record.keep_norm
                && g.iters == record.iters
        };
        match groups.iter_mut().find(|g| same(g)) {
            Some(group) => group.records.push(record),
            None => groups.push(Group {
                subject: record.subject,
                variant: record.variant,
                lr: record.lr,
                keep_norm: record.keep_norm,
                iters: record.iters,
                records: vec![record],
            }),
        }
    }
    groups
}

/// Mean, minimum and maximum of a figure over seeds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub count: usize,
}

impl Stat {
    pub fn of(values: impl Iterator<Item = f64>) -> Stat {
        let values: Vec<f64> = values.collect();
        let count = values.len();
        Stat {
            mean: values.iter().sum::<f64>() / count as f64,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            count,
        }
    }

    /// `mean` with `decimals`, and the range over seeds when there are several.
    pub fn show(&self, decimals: usize) -> String {
        match self.count {
            0 => "-".into(),
            1 => format!("{:.*}", decimals, self.mean),
            _ => format!(
                "{:.*} [{:.*}, {:.*}]",
                decimals, self.mean, decimals, self.min, decimals, self.max
            ),
        }
    }

    /// The same with an explicit sign, for changes.
    pub fn show_change(&self, decimals: usize) -> String {
        match self.count {
            0 => "-".into(),
            1 => format!("{:+.*}", decimals, self.mean),
            _ => format!(
                "{:+.*} [{:+.*}, {:+.*}]",
                decimals, self.mean, decimals, self.min, decimals, self.max
            ),
        }
    }
}

fn lr_label(lr: Option<f64>) -> String {
    lr.map_or("-".into(), |lr| format!("{lr:.0e}"))
}

fn mode_label(keep_norm: Option<bool>) -> &'static str {
    match keep_norm {
        None => "start",
        Some(false) => "plain",
        Some(true) => "keep-norm",
    }
}

/// The inputs present in a subject's records.
fn inputs_of(groups: &[Group], subject: Subject) -> Vec<Input> {
    let all = [
        Input::Uniform,
        Input::Centered,
        Input::Cifar,
        Input::Activations,
    ];
    all.into_iter()
        .filter(|&input| {
            groups.iter().any(|g| {
                g.subject == subject
                    && g.records
                        .iter()
                        .any(|r| r.probe.contains_key(&probe_key(input, ProbePadding::Same)))
            })
        })
        .collect()
}

/// One Markdown table per subject and variant: what the runs did to the weights (L_CS, norms,
/// directions) and the change of both probe figures on every input with `padding`.
pub fn runs_table(records: &[Record], padding: ProbePadding) -> String {
    let groups = groups(records);
    let mut out = String::new();
    let mut seen: Vec<(Subject, Variant)> = Vec::new();
    for g in &groups {
        if !seen.contains(&(g.subject, g.variant)) {
            seen.push((g.subject, g.variant));
        }
    }
    for (subject, variant) in seen {
        let inputs = inputs_of(&groups, subject);
        let seeds = groups
            .iter()
            .filter(|g| g.subject == subject && g.variant == variant)
            .map(|g| g.records.len())
            .max()
            .unwrap_or(0);
        let _ = writeln!(
            out,
            "\n#### {subject}, `{}`, {} padding ({seeds} seed{})\n",
            variant.name(),
            super::padding_name(padding),
            if seeds == 1 { "" } else { "s" }
        );
        let mut header = "| mode | lr | iters | L_CS reduction % | norm ratio | turn ° | scale-free after/before | peak | dc |".to_string();
        let mut rule = "|---|---|---|---|---|---|---|---|---|".to_string();
        for input in &inputs {
            let _ = write!(header, " Δ\\|cos\\| {input} | Δinner {input} |");
            rule.push_str("---|---|");
        }
        let _ = writeln!(out, "{header}\n{rule}");
        for g in groups
            .iter()
            .filter(|g| g.subject == subject && g.variant == variant)
        {
            let _ = write!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                mode_label(g.keep_norm),
                lr_label(g.lr),
                g.iters,
                g.stat(|r| Some(r.loss_reduction)).show(1),
                g.stat(|r| Some(r.norm_ratio)).show(3),
                g.stat(|r| Some(r.turn_degrees)).show(1),
                g.stat(|r| Some(r.scale_free_after / r.scale_free_before))
                    .show(3),
                g.stat(|r| Some(r.shape_after.peak)).show(2),
                g.stat(|r| Some(r.shape_after.dc)).show(2),
            );
            for &input in &inputs {
                let key = probe_key(input, padding);
                let _ = write!(
                    out,
                    " {} | {} |",
                    g.probe(&key, |p| p.cosine_after - p.cosine_before)
                        .show_change(3),
                    g.probe(&key, |p| p.inner_after - p.inner_before)
                        .show_change(3),
                );
            }
            out.push('\n');
        }
    }
    out
}

/// The starting figures of every subject: both probe figures per input and padding.
pub fn start_table(records: &[Record]) -> String {
    let groups = groups(records);
    let mut out = String::from(
        "| subject | input | \\|cos\\| full | \\|cos\\| same | \\|cos\\| valid | inner full | inner same | inner valid |\n|---|---|---|---|---|---|---|---|\n",
    );
    for g in groups
        .iter()
        .filter(|g| g.iters == 0 && g.variant == Variant::Paper)
    {
        for input in inputs_of(&groups, g.subject) {
            let _ = write!(out, "| {} | {input} |", g.subject);
            for measure in [0, 1] {
                for padding in super::PADDINGS {
                    let key = probe_key(input, padding);
                    let stat = g.probe(&key, |p| {
                        if measure == 0 {
                            p.cosine_before
                        } else {
                            p.inner_before
                        }
                    });
                    let _ = write!(out, " {} |", stat.show(3));
                }
            }
            out.push('\n');
        }
    }
    out
}

/// The pretrained network's test accuracy per run.
pub fn accuracy_table(records: &[Record]) -> String {
    let groups = groups(records);
    let mut out = String::from(
        "| variant | mode | lr | iters | L_CS reduction % | norm ratio | Δ\\|cos\\| activations | Δinner activations | accuracy, stored BN | accuracy, BN re-estimated |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for g in groups.iter().filter(|g| g.records[0].accuracy.is_some()) {
        let key = probe_key(Input::Activations, ProbePadding::Same);
        let accuracy = |f: fn(&AccuracyRecord) -> f64| g.stat(|r| r.accuracy.as_ref().map(f));
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            g.variant.name(),
            mode_label(g.keep_norm),
            lr_label(g.lr),
            g.iters,
            g.stat(|r| Some(r.loss_reduction)).show(1),
            g.stat(|r| Some(r.norm_ratio)).show(3),
            g.probe(&key, |p| p.cosine_after - p.cosine_before)
                .show_change(3),
            g.probe(&key, |p| p.inner_after - p.inner_before)
                .show_change(3),
            accuracy(|a| a.stored_bn).show(2),
            accuracy(|a| a.recalibrated_bn).show(2),
        );
    }
    out
}

/// The Equation 3 checks.
pub fn identity_table(records: &[IdentityRecord]) -> String {
    let mut out = String::from(
        "| subject | input | padding | layers checked | max pair error, f64 | relative error, f64 | max pair error, f32 (as run) | relative error, f32 |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in records {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.1e} | {:.1e} | {:.1e} | {:.1e} |",
            r.subject,
            r.input,
            r.padding,
            r.layers_checked,
            r.f64.max_pair_error,
            r.f64.relative_error,
            r.f32.max_pair_error,
            r.f32.relative_error
        );
    }
    out
}

/// Which probe figure a plot shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Cosine,
    Inner,
}

impl Measure {
    fn name(self) -> &'static str {
        match self {
            Measure::Cosine => "cosine",
            Measure::Inner => "inner",
        }
    }

    fn change(self, p: &ProbeChange) -> f64 {
        match self {
            Measure::Cosine => p.cosine_after - p.cosine_before,
            Measure::Inner => p.inner_after - p.inner_before,
        }
    }
}

/// The curves of one plot: against iterations, the change of `measure` on `key` averaged over
/// seeds, one curve per norm mode and learning rate.
pub fn curves(
    records: &[Record],
    subject: Subject,
    variant: Variant,
    key: &str,
    measure: Measure,
) -> Vec<Series> {
    let groups = groups(records);
    let mut settings: Vec<(bool, f64)> = Vec::new();
    for g in &groups {
        if let (Some(keep), Some(lr)) = (g.keep_norm, g.lr) {
            if g.subject == subject && g.variant == variant && !settings.contains(&(keep, lr)) {
                settings.push((keep, lr));
            }
        }
    }
    settings.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    settings
        .into_iter()
        .map(|(keep, lr)| {
            let mut points: Vec<(f64, f64)> = groups
                .iter()
                .filter(|g| {
                    g.subject == subject
                        && g.variant == variant
                        && g.keep_norm == Some(keep)
                        && g.lr == Some(lr)
                })
                .map(|g| (g.iters as f64, g.probe(key, |p| measure.change(p)).mean))
                .filter(|p| p.1.is_finite())
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series {
                label: format!("{} lr {lr:.0e}", mode_label(Some(keep))),
                points,
            }
        })
        .collect()
}

/// Writes a plot per subject, variant, input and measure (same padding) under `dir`, as
/// `<subject>-<variant>-<input>-<measure>.<extension>`, and returns their paths.
pub fn write_plots(records: &[Record], dir: &Path, extensions: &[&str]) -> Result<Vec<PathBuf>> {
    let groups = groups(records);
    let mut pairs: Vec<(Subject, Variant)> = Vec::new();
    for g in &groups {
        if g.iters > 0 && !pairs.contains(&(g.subject, g.variant)) {
            pairs.push((g.subject, g.variant));
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    for (subject, variant) in pairs {
        for input in inputs_of(&groups, subject) {
            let key = probe_key(input, ProbePadding::Same);
            for measure in [Measure::Cosine, Measure::Inner] {
                let curves = curves(records, subject, variant, &key, measure);
                let y_label = match measure {
                    Measure::Cosine => "change of mean feature-map |cos|",
                    Measure::Inner => "change of normalised inner product",
                };
                let axes = Axes {
                    x_label: "Adam iterations (log scale)",
                    y_label,
                    x_scale: Scale::Log,
                    y_scale: Scale::Linear,
                };
                let title = format!(
                    "{subject}, {}: {} on {input} inputs, same padding",
                    variant.name(),
                    measure.name()
                );
                for extension in extensions {
                    let path = dir.join(format!(
                        "{subject}-{}-{input}-{}.{extension}",
                        variant.name(),
                        measure.name()
                    ));
                    crate::plot::write_plot(&path, &title, &axes, &curves)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    written.push(path);
                }
            }
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::study::FilterShape;
    use std::collections::BTreeMap;

    fn record(seed: u64, lr: Option<f64>, iters: usize, cosine_after: f64) -> Record {
        let mut probe = BTreeMap::new();
        probe.insert(
            "uniform/same".to_string(),
            ProbeChange {
                layers: 2,
                cosine_before: 0.5,
                cosine_after,
                inner_before: 0.4,
                inner_after: 0.3,
                raw_inner_ratio: 0.1,
                cosine_up: 1,
                inner_up: 0,
            },
        );
        Record {
            subject: Subject::Cnn1,
            seed,
            variant: Variant::Paper,
            lr,
            keep_norm: lr.map(|_| false),
            iters,
            layers: 2,
            diverged: 0,
            loss_before: 10.0,
            loss_after: 1.0,
            loss_reduction: 90.0,
            scale_free_before: 2.0,
            scale_free_after: 1.0,
            norm_ratio: 0.5,
            norm_ratio_min: 0.4,
            norm_ratio_max: 0.6,
            turn_degrees: 10.0,
            kernel_cosine_before: 0.1,
            kernel_cosine_after: 0.1,
            shape_before: FilterShape::default(),
            shape_after: FilterShape::default(),
            probe,
            accuracy: None,
            seconds: 1.0,
        }
    }

    #[test]
    fn seeds_are_averaged_and_settings_become_curves() {
        let records = vec![
            record(0, None, 0, 0.5),
            record(0, Some(1e-3), 10, 0.4),
            record(1, Some(1e-3), 10, 0.2),
            record(0, Some(1e-3), 100, 0.1),
        ];
        let groups = groups(&records);
        assert_eq!(groups.len(), 3);
        let change = groups[1].probe("uniform/same", |p| p.cosine_after - p.cosine_before);
        assert!((change.mean + 0.2).abs() < 1e-12 && change.count == 2);
        assert_eq!(change.show_change(2), "-0.20 [-0.30, -0.10]");
        let curves = curves(
            &records,
            Subject::Cnn1,
            Variant::Paper,
            "uniform/same",
            Measure::Cosine,
        );
        assert_eq!(curves.len(), 1);
        assert_eq!(curves[0].label, "plain lr 1e-3");
        assert_eq!(curves[0].points.len(), 2);
        assert!((curves[0].points[1].1 + 0.4).abs() < 1e-12);
        let table = runs_table(&records, ProbePadding::Same);
        assert!(
            table.contains("| plain | 1e-3 | 10 | 90.0 [90.0, 90.0] |"),
            "{table}"
        );
        assert!(start_table(&records).contains("| cnn1 | uniform | - | 0.500 |"));
    }
}
