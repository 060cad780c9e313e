# SPDX-License-Identifier: MIT
#
# The docs name the source tree as it is (tests/CMakeLists.txt,
# docs.file_tables):
#   1. the table of the "## Source files" section of docs/architecture.md
#      names every src/**/*.c and src/**/*.h (as `src/dir/file`), and
#      every file it names exists;
#   2. each doc of DIR_TABLES ("doc=dir;...") has a first table whose
#      first column names (`file.c`, bare) exactly the .c and .h files of
#      dir;
#   3. every path under src/, include/, tests/, bench/ or tools/ that
#      README.md or a docs/*.md names exists.
#   ROOT        the source tree
#   DIR_TABLES  optional, see 2
cmake_minimum_required(VERSION 3.20)
set(errors "")

# Files under @dir (relative to ROOT) ending in .c or .h, relative to ROOT.
function(source_files out dir recurse)
	if(recurse)
		file(GLOB_RECURSE found RELATIVE ${ROOT} ${ROOT}/${dir}/*.c ${ROOT}/${dir}/*.h)
	else()
		file(GLOB found RELATIVE ${ROOT} ${ROOT}/${dir}/*.c ${ROOT}/${dir}/*.h)
	endif()
	list(SORT found)
	set(${out} "${found}" PARENT_SCOPE)
endfunction()

# Appends to `errors` what is in @want but not in @have, and the reverse.
function(compare what want have)
	set(e "${errors}")
	foreach(f ${want})
		if(NOT f IN_LIST have)
			string(APPEND e "${what}: ${f} exists but is not listed\n")
		endif()
	endforeach()
	foreach(f ${have})
		if(NOT f IN_LIST want)
			string(APPEND e "${what}: ${f} is listed but does not exist\n")
		endif()
	endforeach()
	set(errors "${e}" PARENT_SCOPE)
endfunction()

# --- 1. docs/architecture.md, "## Source files" -----------------------------
file(READ ${ROOT}/docs/architecture.md arch)
string(FIND "${arch}" "\n## Source files\n" at)
if(at EQUAL -1)
	message(FATAL_ERROR "docs/architecture.md has no '## Source files' section")
endif()
string(SUBSTRING "${arch}" ${at} -1 section)
string(SUBSTRING "${section}" 1 -1 rest)
string(FIND "${rest}" "\n## " end)
if(NOT end EQUAL -1)
	string(SUBSTRING "${rest}" 0 ${end} section)
endif()
set(listed "")
string(REPLACE "\n" ";" lines "${section}")
foreach(line ${lines})
	if(line MATCHES "^\\|([^|]*)\\|")
		string(REGEX MATCHALL "`src/[A-Za-z0-9_./-]+\\.[ch]`" names "${CMAKE_MATCH_1}")
		foreach(n ${names})
			string(REPLACE "`" "" n "${n}")
			list(APPEND listed ${n})
		endforeach()
	endif()
endforeach()
list(LENGTH listed n)
if(n EQUAL 0)
	message(FATAL_ERROR "docs/architecture.md: the Source files table names no file")
endif()
list(REMOVE_DUPLICATES listed)
list(SORT listed)
source_files(tree src TRUE)
compare("docs/architecture.md" "${tree}" "${listed}")

# --- 2. per-directory tables ------------------------------------------------
foreach(pair ${DIR_TABLES})
	string(REPLACE "=" ";" pair "${pair}")
	list(GET pair 0 doc)
	list(GET pair 1 dir)
	file(STRINGS ${ROOT}/${doc} lines)
	set(listed "")
	set(in_table FALSE)
	foreach(line ${lines})
		if(line MATCHES "^\\|([^|]*)\\|")
			set(in_table TRUE)
			string(REGEX MATCHALL "`[A-Za-z0-9_.-]+\\.[ch]`" names "${CMAKE_MATCH_1}")
			foreach(n ${names})
				string(REPLACE "`" "" n "${n}")
				list(APPEND listed ${dir}/${n})
			endforeach()
		elseif(in_table)
			break()
		endif()
	endforeach()
	list(REMOVE_DUPLICATES listed)
	list(SORT listed)
	source_files(tree ${dir} FALSE)
	compare("${doc} (${dir})" "${tree}" "${listed}")
endforeach()

# --- 3. every path a doc names exists ---------------------------------------
set(path_re "(^|[^A-Za-z0-9_./-])(src|include|tests|bench|tools)/")
# (the longer extensions first: CMake's regex takes the first alternative
# that matches, and "c" would cut "x.cmake" to "x.c")
string(APPEND path_re "[A-Za-z0-9_./-]*[A-Za-z0-9_]\\.(cmake|md|c|h)")
file(GLOB docs RELATIVE ${ROOT} ${ROOT}/docs/*.md)
list(APPEND docs README.md)
foreach(doc ${docs})
	file(READ ${ROOT}/${doc} text)
	string(REGEX MATCHALL "${path_re}" paths "${text}")
	foreach(p ${paths})
		string(REGEX REPLACE "^[^a-z]" "" p "${p}")
		if(NOT EXISTS ${ROOT}/${p})
			string(APPEND errors "${doc}: names ${p}, which does not exist\n")
		endif()
	endforeach()
endforeach()

if(errors)
	message(FATAL_ERROR "the docs do not match the tree:\n${errors}")
endif()
message(STATUS "docs match the tree")
