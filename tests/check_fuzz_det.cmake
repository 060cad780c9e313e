# SPDX-License-Identifier: MIT
#
# The fuzzers' deterministic mode (tests/fuzz/fuzz_driver.c, --det): a run
# is a function of its input, so an input file is its own replay file.
# Runs every input of a corpus three times together (twice plain, once
# with -v, which must not change the schedule) and once each on its own
# (as a diverging input is replayed), and checks that each input gets the
# same scheduler log hash every time and that none diverges.
#   DRIVER  the fuzz_driver binary
#   CORPUS  the directory of inputs (*.bin; subdirectories are not read)
#   ENGINE  the driver's engine option: --svm, or empty for VM_BIND
file(GLOB inputs "${CORPUS}/*.bin")
list(LENGTH inputs n)
if(n LESS 5)
	message(FATAL_ERROR "${CORPUS}: only ${n} inputs")
endif()

# Runs the driver on @files (with @flag); the "FILE: ... log hash" lines
# go to @var.
function(det_run var flag files)
	execute_process(COMMAND ${DRIVER} ${ENGINE} --det ${flag} ${files}
		RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
		TIMEOUT 300)
	if(NOT rc STREQUAL "0")
		message(FATAL_ERROR "fuzz_driver ${ENGINE} --det ${flag}: exit "
			"status ${rc}\n${out}\n${err}")
	endif()
	string(REGEX MATCHALL "[^\n]*: deterministic run, log hash [0-9a-f]+"
		hashes "${out}")
	set(${var} "${hashes}" PARENT_SCOPE)
endfunction()

foreach(mode plain again verbose)
	if(mode STREQUAL "verbose")
		det_run(hashes -v "${inputs}")
	else()
		det_run(hashes "" "${inputs}")
	endif()
	list(LENGTH hashes nh)
	if(NOT nh EQUAL n)
		message(FATAL_ERROR "${nh} log hashes for ${n} inputs:\n${hashes}")
	endif()
	set(h_${mode} "${hashes}")
endforeach()
set(h_alone "")
foreach(input ${inputs})
	det_run(hash "" "${input}")
	list(APPEND h_alone "${hash}")
endforeach()
foreach(mode again verbose alone)
	if(NOT h_${mode} STREQUAL h_plain)
		message(FATAL_ERROR "the ${mode} run scheduled differently:\n"
			"${h_plain}\n--- vs ---\n${h_${mode}}")
	endif()
endforeach()
message("${n} inputs, the same log hash in every run:\n${h_plain}")
