"""Model folder size against trained tokens: the bundled demo tokenized against the 126,536-region Buenrostro
universe trains a few thousand tokens; the folder is saved in fastembed's and geniml's layouts.

    .venv/bin/python bench/model_size.py
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

from _data import machine, shared_data


def main() -> None:
    import fastembed as fe
    from fastembed.datasets import load_demo

    print(f"# {machine()}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the low-coverage warning is expected here
        tok = fe.tokenize_cells(load_demo(), shared_data() / "universe_buenrostro2018_hg19" / "peaks.bed")
    model = fe.ScEmbed(seed=0).train(tok, epochs=1, progress=False)
    print(f"trained tokens {int(model.trained_tokens.sum())} of {len(model.universe)} regions")
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("fastembed", "geniml"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # geniml's layout leaves the projection out, with a warning
                d = model.save(Path(tmp) / fmt, format=fmt)
            files = {f.name: f.stat().st_size for f in sorted(d.iterdir())}
            print(f"{fmt}: {sum(files.values()) / 1e6:.1f} MB {files}")


if __name__ == "__main__":
    main()
