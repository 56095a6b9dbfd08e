"""Training recipes, registered in ``RECIPES`` under the method names used everywhere
(``pitrec train NAME``, the benchmark's ``method`` field)."""

from pitrec.train.recipes import content_knn, popularity, sasrec  # noqa: F401

for _optional in ("tiger", "pit"):
    try:
        __import__(f"pitrec.train.recipes.{_optional}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"pitrec.train.recipes.{_optional}":
            raise
