#!/usr/bin/env bash
# Makes DejaVuSansMono-subset.ttf, the font of PNG plots: DejaVu Sans Mono 2.37 (Debian's fonts-dejavu-core)
# cut to printable ASCII, a few symbols and Greek, so that it weighs about 15 KB instead of 340 KB.
# Needs fonttools (pip install fonttools). DejaVu's license (Bitstream Vera, changes public
# domain) allows modified copies that are not named Bitstream or Vera: LICENSE.
set -euo pipefail
cd "$(dirname "$0")"
pyftsubset /usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf \
  --unicodes="U+0020-007E,U+00B0,U+00B1,U+00B5,U+00B7,U+00D7,U+2013,U+2014,U+2026,U+2192,U+2212,U+2248,U+2264,U+2265,U+03B1-03C9,U+0391-03A9" \
  --layout-features='' --no-hinting --output-file=DejaVuSansMono-subset.ttf
