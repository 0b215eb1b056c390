#!/usr/bin/env bash
# Type-check the app's Kotlin (app/src/main/java) without the Android SDK: compile it with kotlinc against
# the real core module and hand-written *signature stubs* of the Android, AndroidX and executorch-android
# 1.5 APIs it calls (stubs/: copied signatures, no behaviour). This catches syntax and type errors and
# calls to LlmModule methods that do not exist; it is not an Android build (see README.md).
# Needs kotlinc (Debian: apt-get install kotlin, 1.3; the app itself targets Kotlin 2.0) and a JDK.
# Extra .kt files given as arguments are compiled with the app (the docs/EXPORT.md snippet, by the tests).
#   android_demo/typecheck/typecheck.sh [extra.kt ...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
core_classpath=$("$here/../core/build.sh")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mkdir -p "$out/stubs" "$out/app"
# Java stubs first (Java interfaces and getters, so Kotlin's SAM conversion and property syntax apply as on Android).
javac -d "$out/stubs" $(find "$here/stubs" -name '*.java' -not -path '*/appcompat/*')
kotlinc -nowarn -cp "$out/stubs" $(find "$here/stubs" -name '*.kt') -d "$out/stubs" 2>&1 | grep -v '^OpenJDK' || true
javac -cp "$out/stubs" -d "$out/stubs" $(find "$here/stubs" -path '*/appcompat/*' -name '*.java')
kotlinc -nowarn -cp "$out/stubs:$core_classpath" $(find "$here/../app/src/main/java" -name '*.kt') "$@" -d "$out/app" 2>&1 \
  | { grep -v '^OpenJDK' || true; } | tee "$out/log"
if grep -q 'error:' "$out/log" || [[ ! -f "$out/app/org/vlsiedge/demo/MainActivity.class" ]]; then
  echo "typecheck: FAILED" >&2
  exit 1
fi
echo "typecheck: app/ compiles against core and the API stubs"
