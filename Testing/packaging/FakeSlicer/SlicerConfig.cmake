# A stand-in for Slicer's CMake package, for packaging tests only.
#
# It defines what an extension's CMakeLists.txt takes from find_package(Slicer): the three
# file variables (Slicer_USE_FILE, Slicer_EXTENSION_GENERATE_CONFIG, Slicer_EXTENSION_CPACK),
# the directory layout variables (Slicer_QTSCRIPTEDMODULES_LIB_DIR, ...) and, through the use
# file, slicerMacroBuildScriptedModule() with the argument names of Slicer's
# CMake/SlicerMacroBuildScriptedModule.cmake. Nothing is compiled and no Slicer is needed.
#
# Use: cmake -S <extension> -B <build> -DSlicer_DIR=<this directory>
#
# Besides copying and installing like the real macro, every call records what it was given
# in ${CMAKE_BINARY_DIR}/FakeSlicerManifest.tsv (see SlicerMacroBuildScriptedModule.cmake),
# which Testing/dicomplus_testing/packaging.py compares with the source tree.

set(Slicer_FOUND TRUE)
set(SlicerConfig_INCLUDED_ONCE TRUE)
set(FakeSlicer_DIR "${CMAKE_CURRENT_LIST_DIR}")

# Version: any X.Y works; the layout below follows it the way Slicer's does.
set(Slicer_MAJOR_VERSION 5)
set(Slicer_MINOR_VERSION 10)
set(Slicer_PATCH_VERSION 0)
set(Slicer_VERSION "${Slicer_MAJOR_VERSION}.${Slicer_MINOR_VERSION}")
set(Slicer_VERSION_FULL "${Slicer_VERSION}.${Slicer_PATCH_VERSION}")
set(Slicer_REVISION "0")
set(Slicer_WC_REVISION "0")
set(Slicer_WC_ROOT "https://github.com/Slicer/Slicer")
set(Slicer_OS "linux")
set(Slicer_ARCHITECTURE "amd64")
set(Slicer_ORGANIZATION_NAME "slicer.org")

set(Slicer_USE_PYTHONQT TRUE)
set(Slicer_BUILD_CLI_SUPPORT FALSE)
set(Slicer_LICENSE_FILE "${FakeSlicer_DIR}/License.txt")
set(Slicer_README_FILE "${FakeSlicer_DIR}/README.txt")

# Relative directories (Slicer's CMake/SlicerDirectories.cmake).
set(Slicer_INSTALL_ROOT "")
set(Slicer_BIN_DIR "bin")
set(Slicer_LIB_DIR "lib/Slicer-${Slicer_VERSION}")
set(Slicer_SHARE_DIR "share/Slicer-${Slicer_VERSION}")
set(Slicer_QTSCRIPTEDMODULES_SUBDIR "qt-scripted-modules")
set(Slicer_QTSCRIPTEDMODULES_BIN_DIR "${Slicer_LIB_DIR}/${Slicer_QTSCRIPTEDMODULES_SUBDIR}")
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR "${Slicer_LIB_DIR}/${Slicer_QTSCRIPTEDMODULES_SUBDIR}")
set(Slicer_QTSCRIPTEDMODULES_SHARE_DIR "${Slicer_SHARE_DIR}/${Slicer_QTSCRIPTEDMODULES_SUBDIR}")

# The three files an extension includes.
set(Slicer_USE_FILE "${FakeSlicer_DIR}/UseSlicer.cmake")
set(Slicer_EXTENSION_GENERATE_CONFIG "${FakeSlicer_DIR}/SlicerExtensionGenerateConfig.cmake")
set(Slicer_EXTENSION_CPACK "${FakeSlicer_DIR}/SlicerExtensionCPack.cmake")

list(APPEND CMAKE_MODULE_PATH "${FakeSlicer_DIR}")
