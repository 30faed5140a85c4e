# FakeSlicer's Slicer_EXTENSION_CPACK (after Slicer's CMake/SlicerExtensionCPack.cmake): the same
# sanity checks, an extension description file in the .s4ext format installed into
# ${Slicer_SHARE_DIR}, and a TGZ package named like Slicer's. Repository information is not
# extracted (the tests build copies of the tree that are not git checkouts).

foreach(var EXTENSION_NAME Slicer_REVISION Slicer_OS Slicer_ARCHITECTURE)
  if("${${var}}" STREQUAL "")
    message(FATAL_ERROR "error: ${var} is either NOT defined or empty.")
  endif()
endforeach()

if(NOT "${EXTENSION_NAME}" STREQUAL "${PROJECT_NAME}")
  message(STATUS "Skipping extension packaging: ${PROJECT_NAME} - EXTENSION_NAME [${EXTENSION_NAME}] different from PROJECT_NAME [${PROJECT_NAME}]")
  return()
endif()

foreach(var EXTENSION_README_FILE EXTENSION_LICENSE_FILE)
  if(NOT EXISTS "${${var}}")
    message(FATAL_ERROR "error: ${var} points to an inexistent file: ${${var}}")
  endif()
endforeach()

# slicerFunctionGenerateExtensionDescription warns about these when empty.
foreach(var EXTENSION_HOMEPAGE EXTENSION_ICONURL EXTENSION_CONTRIBUTORS EXTENSION_DESCRIPTION EXTENSION_SCREENSHOTURLS)
  if("${${var}}" STREQUAL "")
    message(AUTHOR_WARNING "CMake variable ${var} is empty")
  endif()
endforeach()

string(REPLACE ";" " " _fake_slicer_depends "${EXTENSION_DEPENDS}")
string(REPLACE ";" " " _fake_slicer_screenshots "${EXTENSION_SCREENSHOTURLS}")
set(description_file "${CMAKE_BINARY_DIR}/${EXTENSION_NAME}.s4ext")
file(WRITE "${description_file}"
"#
# First token of each non-comment line is the keyword and the rest of the line
# (including spaces) is the value.
# - the value can be blank
#

# This is source code manager (i.e. svn)
scm local
scmurl ${CMAKE_SOURCE_DIR}
scmrevision local

# list dependencies
# - These should be names of other modules that have .s4ext files
# - The dependencies will be built first
depends ${_fake_slicer_depends}

# Inner build directory (default is .)
build_subdirectory ${EXTENSION_BUILD_SUBDIRECTORY}

# homepage
homepage ${EXTENSION_HOMEPAGE}

# Firstname1 Lastname1 ([SubOrg1, ]Org1), Firstname2 Lastname2 ([SubOrg2, ]Org2)
# For example: Jane Roe (Superware), John Doe (Lab1, Nowhere), Joe Bloggs (Noware)
contributors ${EXTENSION_CONTRIBUTORS}

# Match category in the xml description of the module (where it shows up in Modules menu)
category ${EXTENSION_CATEGORY}

# url to icon (png, size 128x128 pixels)
iconurl ${EXTENSION_ICONURL}

# Give people an idea what to expect from this code
#  - Is it just a test or something you stand behind?
status ${EXTENSION_STATUS}

# One line stating what the module does
description ${EXTENSION_DESCRIPTION}

# Space separated list of urls
screenshoturls ${_fake_slicer_screenshots}

# 0 or 1: Define if the extension should be enabled after its installation.
enabled ${EXTENSION_ENABLED}
")
install(FILES "${description_file}" DESTINATION "${Slicer_INSTALL_ROOT}${Slicer_SHARE_DIR}" COMPONENT RuntimeLibraries)

set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${EXTENSION_DESCRIPTION}")
set(CPACK_MONOLITHIC_INSTALL ON)
set(CPACK_PACKAGE_VENDOR "${Slicer_ORGANIZATION_NAME}")
set(CPACK_PACKAGE_DESCRIPTION_FILE "${EXTENSION_README_FILE}")
set(CPACK_RESOURCE_FILE_LICENSE "${EXTENSION_LICENSE_FILE}")
set(CPACK_PACKAGE_FILE_NAME "${Slicer_REVISION}-${Slicer_OS}-${Slicer_ARCHITECTURE}-${EXTENSION_NAME}-local")
set(CPACK_GENERATOR "TGZ")
set(CPACK_SOURCE_TBZ2 OFF CACHE BOOL "Enable to build TBZ2 source packages")
set(CPACK_SOURCE_TZ OFF CACHE BOOL "Enable to build TZ source packages")
include(CPack)
