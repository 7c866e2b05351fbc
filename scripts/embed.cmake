# Turns lua/*.lua into a C file of string constants (run by CMake at build
# time), so the daemon carries its Redis scripts and needs no install path.
file(WRITE ${OUT} "/* Generated from lua/ by scripts/embed.cmake. */\n")
foreach(name admit settle)
  file(READ ${SRC}/lua/${name}.lua hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
  file(APPEND ${OUT} "const char lua_${name}[] = {${hex}0};\n")
endforeach()
