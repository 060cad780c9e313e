# SPDX-License-Identifier: MIT
#
# The SVM fuzzer's deterministic mode (tests/fuzz/fuzz_driver.c, --det): a
# run is a function of its input.  Runs every input of the SVM corpus three
# times (twice plain, once with -v, which must not change the schedule)
# and checks that each input gets the same scheduler log hash every time
# and that none diverges.
#   DRIVER  the fuzz_driver binary
#   CORPUS  the directory of SVM inputs
file(GLOB inputs "${CORPUS}/*.bin")
list(LENGTH inputs n)
if(n LESS 5)
	message(FATAL_ERROR "${CORPUS}: only ${n} inputs")
endif()
foreach(mode plain again verbose)
	if(mode STREQUAL "verbose")
		set(v -v)
	else()
		set(v "")
	endif()
	execute_process(COMMAND ${DRIVER} --svm --det ${v} ${inputs}
		RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
		TIMEOUT 300)
	if(NOT rc STREQUAL "0")
		message(FATAL_ERROR "fuzz_driver --svm --det ${v}: exit status "
			"${rc}\n${out}")
	endif()
	string(REGEX MATCHALL "[^\n]*: deterministic run, log hash [0-9a-f]+"
		hashes "${out}")
	list(LENGTH hashes nh)
	if(NOT nh EQUAL n)
		message(FATAL_ERROR "${nh} log hashes for ${n} inputs:\n${out}")
	endif()
	set(h_${mode} "${hashes}")
endforeach()
foreach(mode again verbose)
	if(NOT h_${mode} STREQUAL h_plain)
		message(FATAL_ERROR "the ${mode} run scheduled differently:\n"
			"${h_plain}\n--- vs ---\n${h_${mode}}")
	endif()
endforeach()
message("${n} inputs, the same log hash in every run:\n${h_plain}")
