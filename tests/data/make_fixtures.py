"""Make the checkpoint fixtures once, with real torch (not needed to run the tests).

    python -m venv venv-torch && venv-torch/bin/pip install torch==2.13.0 numpy pyyaml
    venv-torch/bin/python tests/data/make_fixtures.py      # from the repository root

Writes, next to this script:
- geniml_model/: a folder as geniml's export writes it (checkpoint.pt = torch.save of a Region2Vec state dict
  with projection.weight = arange(17 * 4).reshape(17, 4) / 10, config.yaml from yaml.safe_dump, universe.bed
  with 10 regions of the Buenrostro 2018 hg19 universe);
- geniml_legacy/: the same weights with the legacy config key embedding_size and a universe.bed that ends with
  gtars's placeholder lines for the 7 special tokens (chrUNK 0 0, ...);
- tensors.pt: a float16, a float64, a bfloat16 and an int64 tensor, a transposed view and a slice with a
  storage offset, and a nested dict;
- malicious.pt / malicious_eval.pt: zip checkpoints whose data.pkl calls os.system / builtins.eval to create
  a marker file named 'PWNED' in the working directory when unpickled by a trusting loader;
- legacy_pickle.pt: a torch checkpoint in the pre-1.6 non-zip format.
"""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import torch
import yaml

HERE = Path(__file__).resolve().parent
REGIONS = [
    ("chr1", 237534, 238035),
    ("chr1", 540468, 540969),
    ("chr1", 713908, 714409),
    ("chr1", 752484, 752985),
    ("chr1", 762585, 763086),
    ("chr1", 777731, 778232),
    ("chr1", 804887, 805388),
    ("chr1", 839756, 840257),
    ("chr1", 840519, 841020),
    ("chr1", 845460, 845961),
]
PLACEHOLDERS = ["chrUNK", "chrPAD", "chrMASK", "chrCLS", "chrEOS", "chrBOS", "chrSEP"]


def region2vec_state_dict(vocab: int, dim: int) -> dict:
    module = torch.nn.Module()
    module.projection = torch.nn.Embedding(vocab, dim)
    with torch.no_grad():
        module.projection.weight.copy_(
            torch.arange(vocab * dim, dtype=torch.float32).reshape(vocab, dim) / 10
        )
    return module.state_dict()


def main() -> None:
    vocab, dim = len(REGIONS) + 7, 4
    bed = "".join(f"{c}\t{s}\t{e}\n" for c, s, e in REGIONS)
    for name, config, universe in (
        ("geniml_model", {"vocab_size": vocab, "embedding_dim": dim}, bed),
        (
            "geniml_legacy",
            {"vocab_size": vocab, "embedding_size": dim},
            bed + "".join(f"{c}\t0\t0\n" for c in PLACEHOLDERS),
        ),
    ):
        d = HERE / name
        d.mkdir(exist_ok=True)
        torch.save(region2vec_state_dict(vocab, dim), d / "checkpoint.pt")
        (d / "config.yaml").write_text(yaml.safe_dump(config))
        (d / "universe.bed").write_text(universe)

    w = torch.arange(20, dtype=torch.float32).reshape(4, 5)
    torch.save(
        {
            "half": w.half(),
            "double": w.double(),
            "bfloat16": w.bfloat16(),
            "long": w.long(),
            "transposed": w.t(),
            "slice": w[1:3, 2:],
            "nested": {"inner": torch.ones(3)},
        },
        HERE / "tensors.pt",
    )
    torch.save({"w": w}, HERE / "legacy_pickle.pt", _use_new_zipfile_serialization=False)

    def call(module: str, name: str, arg: str) -> bytes:
        # PROTO 2, GLOBAL module.name, BINUNICODE arg, TUPLE1, REDUCE, STOP
        raw = arg.encode()
        return (
            b"\x80\x02c"
            + module.encode()
            + b"\n"
            + name.encode()
            + b"\nX"
            + struct.pack("<I", len(raw))
            + raw
            + b"\x85R."
        )

    for name, payload in (
        ("malicious.pt", call("os", "system", "touch PWNED")),
        ("malicious_eval.pt", call("builtins", "eval", "open('PWNED', 'w').close() or {}")),
    ):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("archive/data.pkl", payload)
            zf.writestr("archive/byteorder", "little")
            zf.writestr("archive/version", "3\n")
        (HERE / name).write_bytes(buf.getvalue())


if __name__ == "__main__":
    main()
