"""The isolation benchmark's logic as plain Python: order.rhai and order_fs.rhai.

``main`` is also what the fresh-subprocess row runs (this file's text is
passed to ``python -c``), so it uses nothing but builtins.
"""


def main(params: dict) -> dict:  # type: ignore[type-arg]
    qty = int(params["qty"])
    if qty <= 0:
        raise ValueError("qty must be positive")
    sku = params["sku"].strip().upper()
    return {"sku": sku, "qty": qty, "total": qty * params["price"], "bulk": qty >= 10}


def main_fs(params: dict, root: str) -> dict:  # type: ignore[type-arg]
    """``main`` plus reading the catalog (``params["catalog"]`` under ``root``) with open().read()."""
    with open(root + "/" + params["catalog"], encoding="utf-8") as f:
        catalog = f.read()
    out = main(params)
    out["listed"] = out["sku"] in catalog
    return out
