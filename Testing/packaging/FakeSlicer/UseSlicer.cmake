# FakeSlicer's Slicer_USE_FILE: extension defaults, install directories and the macros an
# extension calls (after Slicer's CMake/UseSlicer.cmake.in, reduced to scripted modules).

if(NOT DEFINED EXTENSION_NAME)
  set(EXTENSION_NAME ${PROJECT_NAME})
endif()
if("${EXTENSION_NAME}" STREQUAL "")
  message(FATAL_ERROR "error: call project() before include(\${Slicer_USE_FILE})")
endif()

# Install directories (empty Slicer_INSTALL_ROOT: relative to CMAKE_INSTALL_PREFIX).
set(Slicer_INSTALL_QTSCRIPTEDMODULES_BIN_DIR "${Slicer_INSTALL_ROOT}${Slicer_QTSCRIPTEDMODULES_BIN_DIR}")
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR "${Slicer_INSTALL_ROOT}${Slicer_QTSCRIPTEDMODULES_LIB_DIR}")
set(Slicer_INSTALL_QTSCRIPTEDMODULES_SHARE_DIR "${Slicer_INSTALL_ROOT}${Slicer_QTSCRIPTEDMODULES_SHARE_DIR}")

# Extension defaults, as in Slicer.
if(NOT DEFINED EXTENSION_DEPENDS)
  set(EXTENSION_DEPENDS NA)
endif()
if(NOT DEFINED EXTENSION_LICENSE_FILE)
  set(EXTENSION_LICENSE_FILE "${Slicer_LICENSE_FILE}")
endif()
if(NOT DEFINED EXTENSION_README_FILE)
  set(EXTENSION_README_FILE "${Slicer_README_FILE}")
endif()
if(NOT DEFINED EXTENSION_SOURCE_DIR)
  set(EXTENSION_SOURCE_DIR "${CMAKE_SOURCE_DIR}")
endif()
if(NOT DEFINED EXTENSION_BUILD_SUBDIRECTORY)
  set(EXTENSION_BUILD_SUBDIRECTORY ".")
endif()
if(NOT DEFINED EXTENSION_ENABLED)
  set(EXTENSION_ENABLED 1)
endif()

# Slicer's extensions build their tests by default (SlicerEnableExtensionTesting).
option(BUILD_TESTING "Build the testing tree." ON)

# The manifest every macro call appends to; started once per configure.
set(FakeSlicer_MANIFEST "${CMAKE_BINARY_DIR}/FakeSlicerManifest.tsv")
get_property(_fake_slicer_manifest_started GLOBAL PROPERTY FakeSlicer_MANIFEST_STARTED)
if(NOT _fake_slicer_manifest_started)
  set_property(GLOBAL PROPERTY FakeSlicer_MANIFEST_STARTED TRUE)
  file(WRITE "${FakeSlicer_MANIFEST}"
    "LAYOUT\t${Slicer_QTSCRIPTEDMODULES_LIB_DIR}\t${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}\n")
endif()

include(SlicerMacroBuildScriptedModule)
include(SlicerMacroPythonTesting)
