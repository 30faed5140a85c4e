# FakeSlicer's slicerMacroBuildScriptedModule().
#
# Arguments, sanity checks and destinations follow Slicer's CMake/SlicerMacroBuildScriptedModule.cmake
# and CTK's ctkMacroCompilePythonScript:
#   options  WITH_GENERIC_TESTS WITH_SUBDIR VERBOSE;  one value  NAME;  lists  SCRIPTS RESOURCES
#   - a listed file that does not exist (nor "<file>.py") is a configure-time FATAL_ERROR;
#   - a script without a "py" extension gets ".py" appended;
#   - files are copied at build time to
#       ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}[/<name of CMAKE_CURRENT_SOURCE_DIR>]/<file>
#     keeping their relative path (WITH_SUBDIR names the subdirectory after the source
#     directory, not after NAME, as in Slicer);
#   - install(DIRECTORY) puts that directory into ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}
#     (its content when there is no subdirectory: NO_INSTALL_SUBDIR).
# Not done: byte compilation, translations.
#
# Each call also appends to ${FakeSlicer_MANIFEST} (tab separated):
#   MODULE     <NAME>  <CMAKE_CURRENT_SOURCE_DIR>  <subdir or empty>  <options>
#   SCRIPTS    <NAME>  <absolute source>  <destination relative to qt-scripted-modules>
#   RESOURCES  <NAME>  <absolute source>  <destination relative to qt-scripted-modules>

macro(slicerMacroBuildScriptedModule)
  set(options
    WITH_GENERIC_TESTS
    WITH_SUBDIR
    VERBOSE
    )
  set(oneValueArgs
    NAME
    )
  set(multiValueArgs
    SCRIPTS
    RESOURCES
    )
  cmake_parse_arguments(MY_SLICER
    "${options}"
    "${oneValueArgs}"
    "${multiValueArgs}"
    ${ARGN}
    )

  message(STATUS "Configuring Scripted module: ${MY_SLICER_NAME}")

  if(MY_SLICER_VERBOSE)
    foreach(curr_opt ${options} ${oneValueArgs} ${multiValueArgs})
      message(STATUS "${curr_opt} = ${MY_SLICER_${curr_opt}}")
    endforeach()
  endif()

  # --------------------------------------------------------------------------
  # Sanity checks (same messages as Slicer)
  # --------------------------------------------------------------------------
  if(MY_SLICER_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "Unknown keywords given to slicerMacroBuildScriptedModule(): \"${MY_SLICER_UNPARSED_ARGUMENTS}\"")
  endif()

  if(NOT DEFINED MY_SLICER_NAME)
    message(FATAL_ERROR "NAME is mandatory")
  endif()

  foreach(var SCRIPTS RESOURCES)
    foreach(value ${MY_SLICER_${var}})
      if(NOT IS_ABSOLUTE ${value})
        set(value_absolute ${CMAKE_CURRENT_SOURCE_DIR}/${value})
      else()
        set(value_absolute ${value})
      endif()
      if(NOT EXISTS ${value_absolute} AND NOT EXISTS ${value_absolute}.py)
        if(NOT IS_ABSOLUTE ${value})
          set(value_absolute ${CMAKE_CURRENT_BINARY_DIR}/${value})
        endif()
        get_source_file_property(is_generated ${value_absolute} GENERATED)
        if(NOT is_generated)
          message(FATAL_ERROR
            "slicerMacroBuildScriptedModule(${var}) given nonexistent"
            " file or directory '${value}'")
        endif()
      endif()
    endforeach()
  endforeach()

  if(NOT Slicer_USE_PYTHONQT)
    message(FATAL_ERROR
      "Attempting to build the Python scripted module '${MY_SLICER_NAME}'"
      " when Slicer_USE_PYTHONQT is OFF")
  endif()

  set(_fake_slicer_subdir "")
  set(_fake_slicer_destination_subdir "")
  if(MY_SLICER_WITH_SUBDIR)
    get_filename_component(_fake_slicer_subdir ${CMAKE_CURRENT_SOURCE_DIR} NAME)
    set(_fake_slicer_destination_subdir "/${_fake_slicer_subdir}")
  endif()
  set(_fake_slicer_destination_dir
    "${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}${_fake_slicer_destination_subdir}")

  set(_fake_slicer_options "")
  foreach(_opt ${options})
    if(MY_SLICER_${_opt})
      list(APPEND _fake_slicer_options ${_opt})
    endif()
  endforeach()
  string(REPLACE ";" "," _fake_slicer_options "${_fake_slicer_options}")
  file(APPEND "${FakeSlicer_MANIFEST}"
    "MODULE\t${MY_SLICER_NAME}\t${CMAKE_CURRENT_SOURCE_DIR}\t${_fake_slicer_subdir}\t${_fake_slicer_options}\n")

  # --------------------------------------------------------------------------
  # Copy scripts and resources (ctkMacroCompilePythonScript)
  # --------------------------------------------------------------------------
  set(_fake_slicer_copied_files "")
  foreach(var SCRIPTS RESOURCES)
    foreach(file ${MY_SLICER_${var}})
      if(var STREQUAL "SCRIPTS")
        get_filename_component(file_ext ${file} EXT)
        if(NOT "${file_ext}" MATCHES "py")
          set(file "${file}.py")
        endif()
      endif()
      if(NOT IS_ABSOLUTE ${file})
        set(src "${CMAKE_CURRENT_SOURCE_DIR}/${file}")
        set(tgt_file "${file}")
      else()
        set(src "${file}")
        file(RELATIVE_PATH tgt_file ${CMAKE_CURRENT_BINARY_DIR} ${file})
      endif()
      get_filename_component(src "${src}" ABSOLUTE)
      set(tgt "${_fake_slicer_destination_dir}/${tgt_file}")
      add_custom_command(
        OUTPUT ${tgt}
        DEPENDS ${src}
        COMMAND ${CMAKE_COMMAND} -E copy ${src} ${tgt}
        COMMENT "Copying python ${var}: ${tgt_file}"
        )
      list(APPEND _fake_slicer_copied_files ${tgt})
      if(_fake_slicer_subdir STREQUAL "")
        set(_fake_slicer_relative "${tgt_file}")
      else()
        set(_fake_slicer_relative "${_fake_slicer_subdir}/${tgt_file}")
      endif()
      file(APPEND "${FakeSlicer_MANIFEST}" "${var}\t${MY_SLICER_NAME}\t${src}\t${_fake_slicer_relative}\n")
    endforeach()
  endforeach()
  if(_fake_slicer_copied_files)
    add_custom_target(Copy${MY_SLICER_NAME}PythonFiles ALL DEPENDS ${_fake_slicer_copied_files})
  endif()

  if(MY_SLICER_WITH_SUBDIR)
    set(_fake_slicer_directory_to_install "${_fake_slicer_destination_dir}")
  else()
    set(_fake_slicer_directory_to_install "${_fake_slicer_destination_dir}/")
  endif()
  install(DIRECTORY "${_fake_slicer_directory_to_install}"
    DESTINATION "${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}" COMPONENT RuntimeLibraries
    USE_SOURCE_PERMISSIONS)

  # --------------------------------------------------------------------------
  # Tests
  # --------------------------------------------------------------------------
  if(BUILD_TESTING AND MY_SLICER_WITH_GENERIC_TESTS)
    set(_generic_unitest_scripts)
    SlicerMacroConfigureGenericPythonModuleTests("${MY_SLICER_NAME}" _generic_unitest_scripts)
    foreach(script_name ${_generic_unitest_scripts})
      slicer_add_python_unittest(
        SCRIPT ${script_name}
        SLICER_ARGS --no-main-window --disable-cli-modules
                    --additional-module-path ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}
        TESTNAME_PREFIX nomainwindow_
        )
    endforeach()
  endif()
endmacro()
