"""The MATH-style rows the feature tests prepare with `mopps data` code (level and type vary)."""

LEVELS = ["Level 1", "Level 3", "Level 5", "Level 3", "Level 2", "Level 5", "Level 1", "Level 3"]
TYPES = ["Algebra", "Geometry", "Algebra", "Number Theory", "Algebra", "Geometry", "Precalculus", "Algebra"]
PROBLEMS = [
    "What is $1+1$?", "Find the area of a unit circle.", "Solve $x^2 = 4$ for positive $x$.",
    "What is the remainder of 17 divided by 5?", "Compute $3 \\cdot 4$.",
    "A square has side 3; what is its diagonal squared?", "Evaluate $\\cos 0$.",
    "If $2y + 1 = 7$, what is $y$? Give your answer as an integer, please, and show the steps.",
]
