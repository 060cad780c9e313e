# SPDX-License-Identifier: MIT
#
# Runs the gvm tool and checks what it did (tests/CMakeLists.txt, tool.*):
#   GVM         the binary
#   ARGS        its arguments, one string, split like a shell would
#   EXPECT      the exit status it must return, exactly
#   MATCH       optional: a regex stdout must match
#   ERR_MATCH   optional: a regex stderr must match
#   STDOUT_FILE optional: a file to write stdout to (for a later test)
#   TRACE       optional: a trace file it must have written: valid JSON
#               with a traceEvents array, and every name of TRACE_NAMES
#               (a string of space-separated event names) in it
#   OUT         optional: a file it must have written (removed first)
#   OUT_MATCH   optional: a regex OUT's contents must match
separate_arguments(args UNIX_COMMAND "${ARGS}")
if(TRACE)
	file(REMOVE "${TRACE}")
endif()
if(OUT)
	file(REMOVE "${OUT}")
endif()
# Under a watchdog that prints the threads of a hang before killing it
# (tests/watchdog.sh), sooner than this script's own timeout.
execute_process(COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/watchdog.sh 110
	${GVM} ${args} RESULT_VARIABLE rc
	OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
message("$ gvm ${ARGS}\n${out}${err}exit status: ${rc}")
if(STDOUT_FILE)
	file(WRITE "${STDOUT_FILE}" "${out}")
endif()
if(NOT rc STREQUAL "${EXPECT}")
	message(FATAL_ERROR "gvm ${ARGS}: exit status ${rc}, expected ${EXPECT}")
endif()
if(DEFINED MATCH AND NOT out MATCHES "${MATCH}")
	message(FATAL_ERROR "gvm ${ARGS}: stdout does not match '${MATCH}'")
endif()
if(DEFINED ERR_MATCH AND NOT err MATCHES "${ERR_MATCH}")
	message(FATAL_ERROR "gvm ${ARGS}: stderr does not match '${ERR_MATCH}'")
endif()
if(TRACE)
	file(READ "${TRACE}" json)
	string(JSON n ERROR_VARIABLE jerr LENGTH "${json}" traceEvents)
	if(jerr)
		message(FATAL_ERROR "${TRACE}: not a trace-event JSON file: ${jerr}")
	endif()
	separate_arguments(names UNIX_COMMAND "${TRACE_NAMES}")
	foreach(name ${names})
		string(FIND "${json}" "\"name\":\"${name}\"" at)
		if(at EQUAL -1)
			message(FATAL_ERROR "${TRACE}: no '${name}' event")
		endif()
	endforeach()
	message(STATUS "${TRACE}: ${n} trace events")
endif()
if(OUT)
	if(NOT EXISTS "${OUT}")
		message(FATAL_ERROR "gvm ${ARGS}: wrote no ${OUT}")
	endif()
	file(READ "${OUT}" content)
	if(DEFINED OUT_MATCH AND NOT content MATCHES "${OUT_MATCH}")
		message(FATAL_ERROR "${OUT} does not match '${OUT_MATCH}'")
	endif()
endif()
