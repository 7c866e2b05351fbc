# Turns lua/limits.lua into a C string constant (run by CMake at build time),
# so the daemon carries its Redis script and needs no install path.
file(READ ${SRC}/lua/limits.lua hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
file(WRITE ${OUT} "/* Generated from lua/limits.lua by scripts/embed.cmake. */\nconst char lua_limits[] = {${hex}0};\n")
