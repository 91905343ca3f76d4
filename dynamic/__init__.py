"""The evolving part of Agentry, written by the mechanic at run time."""
