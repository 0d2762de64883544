#!/usr/bin/env bash
# House style: every C++ file of the repository is formatted by .clang-format
# (`clang-format --dry-run -Werror`). The files are the ones git tracks (or, outside a git
# checkout, every .cpp/.h/.hpp/.cc outside build directories). The check is shown able to fail
# on a misformatted copy of one of them.
source "$(dirname "$0")/lib.sh"
need clang-format
cd "$PES_SOURCE_DIR"
[ -f .clang-format ] || fail "no .clang-format at the repository root"

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files -- '*.cpp' '*.h' '*.hpp' '*.cc')
else
  mapfile -t files < <(find . -path ./build -prune -o -path './build-*' -prune -o -path '*/node_modules' -prune \
    -o -type f \( -name '*.cpp' -o -name '*.h' -o -name '*.hpp' -o -name '*.cc' \) -print | sed 's#^\./##' | sort)
fi
[ "${#files[@]}" -gt 50 ] || fail "found only ${#files[@]} C++ files"
log "clang-format $(clang-format --version | grep -o '[0-9][0-9.]*' | head -n1) --dry-run -Werror on ${#files[@]} files"
if ! out=$(clang-format --dry-run -Werror "${files[@]}" 2>&1); then
  echo "$out" | head -n 40
  bad=$(grep -oE '^[^:]+\.(cpp|h|hpp|cc):' <<<"$out" | sort -u | tr -d ':' | tr '\n' ' ')
  fail "not formatted (run clang-format -i on them): $bad"
fi

# The same command rejects a copy of a file with its indentation broken.
sample=${files[0]}
mkdir -p "$TMP/$(dirname "$sample")"
cp .clang-format "$TMP/"
sed 's/^  /     /' "$sample" >"$TMP/$sample"
if clang-format --dry-run -Werror "$TMP/$sample" >/dev/null 2>&1; then
  fail "clang-format accepted a misindented copy of $sample"
fi
log "PASS"
