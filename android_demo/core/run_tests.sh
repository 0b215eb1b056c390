#!/usr/bin/env bash
# Build the JVM module and run its unit tests, golden tests included, with javac + JUnit 4 (no Gradle):
#   android_demo/core/run_tests.sh EXPORT_DIR     # an export with app_golden/ (python -m vlsi_edge.export)
# tests/test_android_demo.py runs this on an export it makes in the same run.
set -euo pipefail
export_dir=$(realpath "${1:?usage: run_tests.sh EXPORT_DIR}")
here=$(cd "$(dirname "$0")" && pwd)
classpath=$("$here/build.sh")
out=$here/build/jvm/test
rm -rf "$out" && mkdir -p "$out"
javac -Xlint:all --release 11 -d "$out" -cp "$classpath" $(find "$here/src/test/java" -name '*.java')
tests=$(cd "$out" && find . -name '*Test.class' | sed 's|^\./||; s|\.class$||; s|/|.|g' | sort)
java -Dvlsi_edge.export="$export_dir" -cp "$out:$classpath" org.junit.runner.JUnitCore $tests
