//! Writing the training and sweep plots, drawn by `cs_init::report::plot` on their own axes.

use std::io::{self, Write};
use std::path::Path;

use cs_init::checkpoint::OutputFile;
use cs_init::report::plot::{render_with, Axes, PlotFormat, Series};

/// Renders a plot with `axes` in the format chosen by `path`'s extension (.svg or .png) and
/// writes it to `path`, atomically: a temporary file renamed over `path` when complete.
pub fn write_plot(path: &Path, title: &str, axes: &Axes, curves: &[Series]) -> io::Result<()> {
    let format = PlotFormat::from_path(path).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "cannot write a plot to {}: the file name must end in .svg or .png",
                path.display()
            ),
        )
    })?;
    let mut out = OutputFile::create(path, true).map_err(io::Error::other)?;
    out.write_all(&render_with(format, title, axes, curves))?;
    out.commit().map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cs_init::report::plot::Scale;

    const ACCURACY: Axes<'static> = Axes {
        x_label: "epoch",
        y_label: "test accuracy (%)",
        x_scale: Scale::Linear,
        y_scale: Scale::Linear,
    };

    fn curves() -> Vec<Series> {
        let points = vec![(1.0, 10.0), (2.0, 50.0), (3.0, 80.0)];
        vec![Series {
            label: "a".into(),
            points,
        }]
    }

    #[test]
    fn writes_the_plot_whole_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["accuracy.svg", "accuracy.PNG"] {
            let path = dir.path().join(name);
            write_plot(&path, "t", &ACCURACY, &curves()).unwrap();
            let format = PlotFormat::from_path(&path).unwrap();
            let expected = render_with(format, "t", &ACCURACY, &curves());
            assert_eq!(std::fs::read(&path).unwrap(), expected);
        }
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["accuracy.PNG", "accuracy.svg"]);
    }

    #[test]
    fn rejects_other_extensions_and_missing_directories_writing_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let error = write_plot(&dir.path().join("a.txt"), "t", &ACCURACY, &curves()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(error.to_string().contains(".svg or .png"), "{error}");
        let missing = dir.path().join("missing").join("a.svg");
        assert!(write_plot(&missing, "t", &ACCURACY, &curves()).is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
