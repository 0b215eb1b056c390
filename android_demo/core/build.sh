#!/usr/bin/env bash
# Compile the JVM module with javac (no Gradle, no network) into build/jvm/main: src/main (what the app
# uses) and src/host (the laptop CLI, which needs java.awt / ImageIO). Prints the classpath to run it
# with. Jars: Debian's (apt-get install openjdk-17-jdk-headless libgoogle-gson-java junit4), or
# JARS=/path/gson.jar[:...]. Used by run_tests.sh and by `python -m vlsi_edge.app`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
jars=${JARS:-/usr/share/java/gson.jar:/usr/share/java/junit4.jar:/usr/share/java/hamcrest-core.jar}
for jar in ${jars//:/ }; do
  [[ -f $jar ]] || { echo "missing $jar: apt-get install junit4 libgoogle-gson-java (or set JARS)" >&2; exit 2; }
done
out=$here/build/jvm/main
rm -rf "$out" && mkdir -p "$out"
javac -Xlint:all -Werror --release 11 -d "$out" -cp "$jars" $(find "$here/src/main/java" "$here/src/host/java" -name '*.java') >&2
echo "$out:$jars"
