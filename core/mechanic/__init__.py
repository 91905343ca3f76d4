"""The mechanic: safe runtime schema evolution (DESIGN §6).

spec -> render -> generate -> lint -> dry run -> backup -> apply -> commit -> record -> live.
"""
