"""The report of a run as a Python object: the command's JSON fields, ``to_json()`` and a
notebook table."""

import html
import json


class Report:
    """A run's report. ``report["totals"]`` or ``report.totals`` reads a field of the JSON report
    (``schema_version`` 1, docs/cli.md); ``layers`` is the list of per-layer records. For
    :func:`cs_init.run`, ``checkpoint``, ``report_path``, ``plot_path`` and ``files`` say what was
    written."""

    def __init__(self, text, checkpoint=None, report_path=None, plot_path=None, files=()):
        self._text = text
        self._data = json.loads(text)
        self.checkpoint = checkpoint
        self.report_path = report_path
        self.plot_path = plot_path
        self.files = list(files)

    def to_json(self):
        """The report as JSON text, byte for byte what the command writes to its report file."""
        return self._text

    def to_dict(self):
        """The report as plain dicts and lists (a fresh copy)."""
        return json.loads(self._text)

    def __getitem__(self, key):
        return self._data[key]

    def __getattr__(self, name):
        data = self.__dict__.get("_data")
        if data is not None and name in data:
            return data[name]
        raise AttributeError(f"'Report' object has no attribute '{name}'")

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._data))

    def keys(self):
        return self._data.keys()

    @property
    def diverged(self):
        """Names of the layers that diverged and kept their input weights."""
        return [l["name"] for l in self._data["layers"] if l["status"] == "diverged"]

    def __repr__(self):
        t = self._data["totals"]
        return (
            f"<cs_init.Report {self._data['input']!r}: {t['optimized']} optimized, "
            f"{t['skipped']} skipped, {t['diverged']} diverged; "
            f"L_CS {t['loss_before']:.6g} -> {t['loss_after']:.6g}>"
        )

    def _repr_html_(self):
        t = self._data["totals"]

        def num(x):
            return "" if x is None else f"{x:.4g}"

        def change(a, b):
            if a is None:
                return ""
            return num(a) if b is None else f"{num(a)} → {num(b)}"

        rows = []
        for l in self._data["layers"]:
            rows.append(
                "<tr>"
                + "".join(
                    f"<td>{html.escape(str(c))}</td>"
                    for c in (
                        l["name"],
                        "×".join(map(str, l["shape"])),
                        l["kind"],
                        l["status"] if not l.get("reason") else f"{l['status']}: {l['reason']}",
                        change(l["loss_before"], l["loss_after"]),
                        change(l["kernel_cosine_before"], l["kernel_cosine_after"]),
                        change(l["feature_cosine_before"], l["feature_cosine_after"]),
                        l["iterations"],
                        f"{l['seconds']:.3f}",
                    )
                )
                + "</tr>"
            )
        head = "".join(
            f"<th>{h}</th>"
            for h in (
                "layer",
                "shape",
                "kind",
                "status",
                "L_CS",
                "kernel |cos|",
                "feature |cos|",
                "iters",
                "s",
            )
        )
        summary = (
            f"<p><b>cs-init</b> {html.escape(self._data['input'])}: {t['optimized']} optimized, "
            f"{t['skipped']} skipped, {t['diverged']} diverged; L_CS "
            f"{num(t['loss_before'])} → {num(t['loss_after'])}; feature |cos| "
            f"{change(t['feature_cosine_before'], t['feature_cosine_after']) or 'not measured'}; "
            f"{t['total_seconds']:.2f} s</p>"
        )
        return f"{summary}<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
