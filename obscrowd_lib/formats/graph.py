"""Shared by the graph interpreters (tfjs graph models, frozen TF GraphDefs): evaluation order."""

from __future__ import annotations

from typing import Callable, Iterable


def dependency_order(output: str, inputs_of: Callable[[str], Iterable[str]], defined: Callable[[str], bool],
                     where: str) -> list[str]:
    """The nodes ``output`` depends on (itself included), each after all of its inputs.

    Iterative depth-first search in post-order, so deep graphs do not hit Python's recursion limit.
    ``inputs_of(name)`` names a node's inputs; ``defined(name)`` says whether a node exists.
    A reference to an undefined node or a cycle raises ``ValueError`` naming ``where`` (the file).
    """
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack = [(output, False)]
    while stack:
        name, expanded = stack.pop()
        if expanded:
            state[name] = 2
            order.append(name)
            continue
        if state.get(name) == 2:
            continue
        if not defined(name):
            raise ValueError(f"{where}: node {name!r} is referenced but not defined")
        if state.get(name) == 1:
            raise ValueError(f"{where}: cycle through node {name!r}")
        state[name] = 1
        stack.append((name, True))
        stack.extend((ref, False) for ref in reversed(list(inputs_of(name))) if ref and state.get(ref) != 2)
    return order
