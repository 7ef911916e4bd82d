"""Naming: the rules a node's dotted name follows, and one scope's name manager.

Names become torch module paths, state_dict keys and ONNX node names, so they are
stable: ``as:`` or ``{prefix}{n}`` per scope (conv1, bn2…), unique within their scope,
never a name torch modules use for themselves. Like torch.fx's ``_Namespace``, a
:class:`Namespace` hands out the next free automatic name and refuses a taken one; it
knows nothing of specs, so the resolver turns its refusals into positioned errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: the name that refers to the enclosing block's input (the network's, at top level)
BLOCK_INPUT = "in"
#: the network input's node name
INPUT = "input"

#: names a layer cannot take because backends give them another meaning: attributes of
#: torch modules (a layer named ``train`` would shadow Module.train). The torch backend's
#: tests check this list against the torch they run with.
RESERVED_NAMES = frozenset("""
    T_destination add_module add_submodule apply bfloat16 buffers call_super_init children
    code compile cpu cuda delete_all_unused_submodules delete_submodule double dump_patches eval
    extra_repr float forward get_buffer get_extra_state get_parameter get_submodule graph
    half ipu load_state_dict meta modules mtia named_buffers named_children named_modules
    named_parameters parameters print_readable recompile register_backward_hook
    register_buffer register_forward_hook register_forward_pre_hook
    register_full_backward_hook register_full_backward_pre_hook
    register_load_state_dict_post_hook register_load_state_dict_pre_hook register_module
    register_parameter register_state_dict_post_hook register_state_dict_pre_hook
    requires_grad_ set_extra_state set_submodule shape_env share_memory state_dict to
    to_empty to_folder train training type xpu zero_grad
""".split())


def join(scope: str, name: str) -> str:
    return f"{scope}.{name}" if scope else name


def name_problem(name: object, is_identifier: bool) -> str | None:
    """Why ``as: name`` cannot be a layer's name, or None when it can."""
    if not isinstance(name, str) or not is_identifier:
        return f"as: '{name}' is not a valid name (letters, digits, _)"
    if name == INPUT:
        return "as: 'input' is reserved for the network's input"
    if name == BLOCK_INPUT:
        return "as: 'in' is reserved: it names the input of the enclosing block"
    if name.startswith("_") or name in RESERVED_NAMES:
        return (f"as: '{name}' is reserved (torch modules use it for themselves); "
                "choose another name")
    return None


@dataclass
class Namespace:
    """The local names taken in one scope, and the counters of its automatic names."""

    taken: set[str] = field(default_factory=set)
    counters: dict[str, int] = field(default_factory=dict)

    def auto(self, prefix: str) -> str:
        """The next ``{prefix}{n}`` not taken (not claimed: a caller claims or takes it)."""
        while True:
            self.counters[prefix] = self.counters.get(prefix, 0) + 1
            name = f"{prefix}{self.counters[prefix]}"
            if name not in self.taken:
                return name

    def claim(self, name: str) -> bool:
        """Take ``name``; False when it was already taken in this scope."""
        if name in self.taken:
            return False
        self.taken.add(name)
        return True

    def numbered(self, base: str, start: int | None = None) -> str:
        """Take the first free of ``base``, ``base2``, ``base3``… (shortcut, shortcut2), or
        with ``start`` of ``base{start}``, ``base{start+1}``… (branch1, branch2)."""
        n = 1 if start is None else start
        while (local := base if start is None and n == 1 else f"{base}{n}") in self.taken:
            n += 1
        self.taken.add(local)
        return local
