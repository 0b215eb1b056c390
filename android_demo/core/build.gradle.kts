// Plain JVM, no Android: the app's logic that is not UI. Also built and tested without Gradle by
// run_tests.sh (javac + JUnit), which is what CI runs here.
plugins {
    `java-library`
}

java {
    sourceCompatibility = JavaVersion.VERSION_11
    targetCompatibility = JavaVersion.VERSION_11
}

// src/host: the laptop CLI (java.awt / ImageIO, which Android lacks), kept out of the library the app uses.
val host: SourceSet by sourceSets.creating {
    compileClasspath += sourceSets.main.get().output + sourceSets.main.get().compileClasspath
    runtimeClasspath += sourceSets.main.get().output + sourceSets.main.get().runtimeClasspath
}

sourceSets.test {
    compileClasspath += host.output
    runtimeClasspath += host.output
}

dependencies {
    implementation(libs.gson)
    testImplementation(libs.junit)
}

// Golden and model-directory tests need an export: ./gradlew :core:test -PvlsiEdgeExport=/path/to/export
tasks.test {
    val export = providers.gradleProperty("vlsiEdgeExport")
    inputs.property("vlsiEdgeExport", export.orElse(""))
    systemProperty("vlsi_edge.export", export.orElse("").get())
}
