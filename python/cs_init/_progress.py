"""Progress of a run: the user's callback, and a tqdm bar when tqdm is installed."""

import json


class Progress:
    """Receives the extension's events: ``layer_started``, ``iteration`` (at most every 50 ms,
    and the last) and ``layer_finished`` (``layer`` holds the report's record of the layer).

    ``progress``: ``None`` shows a tqdm bar when tqdm is installed, ``False`` nothing, ``True`` a
    tqdm bar (an error without tqdm), a callable gets every event as a dict."""

    def __init__(self, progress):
        self.callback = None
        self.tqdm = None
        self.bar = None
        if callable(progress):
            self.callback = progress
        elif progress is None or progress is True:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                if progress is True:
                    raise
            else:
                self.tqdm = tqdm
        elif progress is not False:
            raise TypeError(f"progress must be None, a bool or a callable, got {progress!r}")

    def active(self):
        return self.callback is not None or self.tqdm is not None

    def __call__(self, event):
        if "layer" in event:
            event["layer"] = json.loads(event["layer"])
        if self.tqdm is not None:
            self._bar(event)
        if self.callback is not None:
            self.callback(event)

    def _bar(self, event):
        kind = event["event"]
        if kind == "layer_started":
            if self.bar is None:
                self.bar = self.tqdm(total=event["count"], unit="layer", desc="cs-init")
            self.bar.set_postfix_str(event["name"], refresh=False)
        elif kind == "iteration" and self.bar is not None:
            self.bar.set_postfix_str(f"L_CS {event['loss']:.4g}")
        elif kind == "layer_finished" and self.bar is not None:
            if event["layer"]["status"] != "skipped":
                self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
