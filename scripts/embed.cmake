# Turns a file into a C string constant (run by CMake at build time), so the
# daemon carries its Redis script and status page and needs no install path:
#   cmake -DIN=file -DNAME=c_name -DOUT=out.c -P embed.cmake
file(READ ${IN} hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
get_filename_component(base ${IN} NAME)
file(WRITE ${OUT} "/* Generated from ${base} by scripts/embed.cmake. */\nconst char ${NAME}[] = {${hex}0};\n")
