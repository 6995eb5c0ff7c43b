"""Small helpers of the markdown report: numbers, rows found by name, target lines."""


def fmt(value, digits=0):
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def find(rows, name):
    for row in rows or []:
        if row.get("name") == name:
            return row
    return None


def small_gap(ms):
    """Gaps under 2 ms are not listed: a 0 means "none over 2 ms"."""
    if ms is None:
        return "-"
    return "< 2" if ms == 0 else f"{ms:.2f}"


def target_line(what, measured, target, ratio, met, unit=""):
    if measured is None:
        return f"| {what} | {target} | not measured (see its section) | - | - |"
    return (f"| {what} | {target} | {measured}{unit} | {ratio:.2f} | "
            f"{'met' if met else '**not met**'} |")
