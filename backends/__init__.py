"""Backends: implementations that execute one program, selected by name.

``float``: float reference of a NIR graph (defines what the graph means in discrete time).
``cpu``: bit-accurate fixed-point simulator of a compiled program (Lava/Loihi integer semantics).
``lava``: the compiled program lowered to Lava processes (needs lava-nc).
"""
