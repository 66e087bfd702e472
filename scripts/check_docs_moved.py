"""Check that README text moved to docs/ lost no number: every line of an older README that
holds a number is found whole (whitespace aside) in README.md or a docs/*.md file, or else
all its numbers are in one of those files. Lists the lines that fail; exit 1 if any.

    python scripts/check_docs_moved.py 407b3fc      # the README of that revision
"""

import re
import subprocess
import sys
from pathlib import Path

NUMBER = re.compile(r"\d(?:[\d,.]*\d)?")


def squeeze(text: str) -> str:
    return " ".join(text.split())


def main(revision: str) -> int:
    root = Path(__file__).resolve().parent.parent
    old = subprocess.run(["git", "show", f"{revision}:README.md"], cwd=root, check=True,
                         capture_output=True, text=True).stdout.split("\n")
    texts = [p.read_text() for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))]]
    squeezed = [squeeze(t) for t in texts]
    counted = whole = 0
    lost = []
    for number, line in enumerate(old, 1):
        numbers = NUMBER.findall(line)
        if not numbers:
            continue
        counted += 1
        if any(squeeze(line) in t for t in squeezed):
            whole += 1
        elif not any(all(n in t for n in numbers) for t in texts):
            lost.append(f"README.md:{number} ({revision}): {line.strip()}")
    print(f"{counted} lines with numbers: {whole} found whole, "
          f"{counted - whole - len(lost)} by their numbers, {len(lost)} lost")
    print("\n".join(lost))
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "HEAD"))
