# Turns a text file into a C++ raw string literal include: R"tg(...)tg"
file(READ ${IN} CONTENT)
file(WRITE ${OUT} "R\"tgembed(${CONTENT})tgembed\"")
