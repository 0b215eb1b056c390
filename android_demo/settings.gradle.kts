// The vlsi_edge Android demo: `app` (Android UI, ExecuTorch LlmModule) and `core` (plain JVM: manifest
// checks, image preprocessing, prompt, token streaming; built and tested without the Android SDK).
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "vlsi-edge-demo"
include(":app", ":core")
