#!/usr/bin/env bash
# Checks that need no build. scripts/test.sh runs them before its builds (XMPPGW_SKIP_LINT=1 skips
# them there); run them alone with `bash scripts/lint.sh`. Every check runs, then the script exits
# non-zero if any failed:
#
#   format     every tracked *.c and *.h under gateway/ and tests/unit/ is as clang-format would
#              write it with the checked-in .clang-format (clang-format --dry-run -Werror)
#   length     no function in gateway/ is longer than MAX_FUNCTION_LINES (80) lines, counted from
#              its first line to its closing brace by universal-ctags
#   readme     tests/README.md has a table row for every test file (tests/unit/*.c,
#              tests/integration/*.test.mjs, tests/browser/*.test.mjs, tests/fault/*.test.mjs,
#              tests/proxy/*.test.mjs,
#              tests/fuzz/fuzz_*.c), and
#              every row names a file that exists. A row starts with the path below tests/ in
#              backticks:  | `unit/test_buf.c` | what it checks |
#
# Needs clang-format and universal-ctags (Debian packages clang-format and universal-ctags;
# scripts/test.sh installs them).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
MAX_FUNCTION_LINES=80
README=tests/README.md
failed=()

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'lint.sh: %s\n' "$*" >&2; exit 1; }

command -v clang-format >/dev/null \
    || die "clang-format not found (Debian: apt-get install clang-format; scripts/test.sh installs it)"
ctags --version 2>/dev/null | grep -q 'Universal Ctags' \
    || die "universal-ctags not found (Debian: apt-get install universal-ctags; scripts/test.sh installs it)"

# Tracked files in a git checkout (so scratch files do not count), every file otherwise.
c_sources() {
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files -- 'gateway/*.c' 'gateway/*.h' 'tests/unit/*.c' 'tests/unit/*.h'
    else
        find gateway tests/unit -type f -name '*.[ch]' | sort
    fi
}

check_format() {
    say "format: clang-format --dry-run -Werror ($(clang-format --version | head -n1))"
    local f unformatted=()
    while IFS= read -r f; do
        [ -f "$f" ] || continue # tracked, but deleted in the working tree
        clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || unformatted+=("$f")
    done < <(c_sources)
    if [ "${#unformatted[@]}" -eq 0 ]; then
        echo "all files formatted"
        return
    fi
    echo "${#unformatted[@]} file(s) would change:"
    printf '  %s\n' "${unformatted[@]}"
    echo "fix with:"
    echo "  clang-format -i ${unformatted[*]}"
    failed+=(format)
}

check_function_length() {
    say "length: functions in gateway/ longer than $MAX_FUNCTION_LINES lines"
    local long=()
    mapfile -t long < <(
        ctags -R --languages=C --kinds-C=f --fields=+ne -x --_xformat='%N %F %n %{end}' gateway |
            awk -v max="$MAX_FUNCTION_LINES" '
                $3 ~ /^[0-9]+$/ && $4 ~ /^[0-9]+$/ && $4 - $3 + 1 > max {
                    printf "%s:%s (%d lines)\n", $2, $1, $4 - $3 + 1
                }' | sort)
    if [ "${#long[@]}" -eq 0 ]; then
        echo "no function over $MAX_FUNCTION_LINES lines"
        return
    fi
    echo "${#long[@]} function(s) over $MAX_FUNCTION_LINES lines:"
    printf '  %s\n' "${long[@]}"
    failed+=(length)
}

check_readme() {
    say "readme: $README names every test file"
    local f rel missing=() stale=()
    shopt -s nullglob
    for f in tests/unit/*.c tests/integration/*.test.mjs tests/browser/*.test.mjs \
        tests/fault/*.test.mjs tests/proxy/*.test.mjs tests/fuzz/fuzz_*.c; do
        rel=${f#tests/}
        grep -qF "| \`$rel\` |" "$README" || missing+=("$rel")
    done
    shopt -u nullglob
    # shellcheck disable=SC2016 # the backticks are the README's, not the shell's
    while IFS= read -r rel; do
        [ -f "tests/$rel" ] || stale+=("$rel")
    done < <(sed -n 's/^| `\([^`]*\)` |.*/\1/p' "$README")
    if [ "${#missing[@]}" -eq 0 ] && [ "${#stale[@]}" -eq 0 ]; then
        echo "every test file has its row"
        return
    fi
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "test files without a row in $README (add  | \`PATH\` | what it checks |):"
        printf '  %s\n' "${missing[@]}"
    fi
    if [ "${#stale[@]}" -gt 0 ]; then
        echo "rows in $README naming files that do not exist:"
        printf '  %s\n' "${stale[@]}"
    fi
    failed+=(readme)
}

check_format
check_function_length
check_readme

if [ "${#failed[@]}" -gt 0 ]; then
    printf '\nlint.sh: failed: %s\n' "${failed[*]}" >&2
    exit 1
fi
say "lint passed"
