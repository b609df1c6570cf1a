# bench/ is collected only when named explicitly (pyproject's testpaths = tests).
