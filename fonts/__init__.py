"""The bundled fonts (NanumSquare, NanumSquareRound, NanumMyeongjo; OFL, see LICENSE-nanum.txt).

Not code: this file makes the folder the package ``adgen_fonts`` (pyproject.toml maps it), so the
fonts ship in the wheel as package data and ``importlib.resources`` finds them in any install.
"""
