"""Write the fuzz target's seed corpus from the provider fixtures the unit tests use.

    .venv/bin/python tests/fuzz/write_corpus.py [DIR [DICT]]
        (default: tests/fuzz/corpus and tests/fuzz/normalizers.dict)

It also writes the libFuzzer dictionary of the providers' field
names and words (``-dict=``), which helps byte mutations of raw bodies build real fields.

Each fixture under tests/fixtures/providers becomes two seeds: its compact JSON as a raw body
(libFuzzer mutates the bytes) and as the document of a mutate-mode input (the target edits its
tree); a few generate-mode seeds start the generator on each provider's shape. The files are
committed; a unit test checks they match what this script writes.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_normalizers import (  # the layout lives with the target
    FIELDS,
    SIGNATURE_OTHER_SECRET,
    SIGNATURE_TAMPERED,
    WORDS,
    generate_input,
    mutate_input,
    raw_input,
)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "providers"
DEFAULT_DIR = Path(__file__).resolve().parent / "corpus"
DICTIONARY = Path(__file__).resolve().parent / "normalizers.dict"
ENDPOINT_OF = {"meta": "meta", "whatsapp": "meta", "x": "x"}


def seeds() -> dict[str, bytes]:
    """File name -> seed input."""
    found: dict[str, bytes] = {}
    for path in sorted(FIXTURES.glob("*/*.json")):
        endpoint = ENDPOINT_OF[path.parent.name]
        body = orjson.dumps(orjson.loads(path.read_bytes()))
        # the edit bytes pick places and edits; a digest spreads them over the tree
        edits = hashlib.sha256(path.name.encode()).digest()[:12]
        name = f"{path.parent.name}-{path.stem}"
        found[f"{name}.raw"] = raw_input(endpoint, body)
        found[f"{name}.mut"] = mutate_input(endpoint, body, edits)
    text = orjson.dumps(orjson.loads((FIXTURES / "meta" / "messenger_text.json").read_bytes()))
    found["signature-tampered.raw"] = raw_input("meta", text, SIGNATURE_TAMPERED)
    found["signature-other-secret.raw"] = raw_input("meta", text, SIGNATURE_OTHER_SECRET)
    found["not-json.raw"] = raw_input("meta", b'{"object":"page","entry":[')
    for shape in range(7):
        for endpoint in ("meta", "x"):
            found[f"generate-{endpoint}-{shape}.gen"] = generate_input(
                endpoint, bytes([shape, 3, 1, 4, 1, 5, 9, 2, 6])
            )
    return found


def dictionary() -> str:
    """libFuzzer dictionary lines: quoted field names and words, and JSON's own punctuation."""
    tokens = [f'"{field}":' for field in FIELDS] + [f'"{word}"' for word in WORDS]
    tokens += ["{", "}", "[", "]", ",", ":", "null", "true", "false", '""', "-", "e+308", "\\u0000"]
    escaped = (token.replace("\\", "\\\\").replace('"', '\\"') for token in dict.fromkeys(tokens))
    return "".join(f'"{token}"\n' for token in escaped)


def write(directory: Path, dictionary_path: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    wanted = seeds()
    for stale in directory.iterdir():
        if stale.name not in wanted:
            stale.unlink()
    for name, data in wanted.items():
        (directory / name).write_bytes(data)
    dictionary_path.write_text(dictionary(), encoding="utf-8")


if __name__ == "__main__":
    write(
        Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR,
        Path(sys.argv[2]) if len(sys.argv) > 2 else DICTIONARY,
    )
