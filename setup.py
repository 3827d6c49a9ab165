"""Packages for setuptools: every ``cbt_llm*`` package plus the two card-template folders kept at the top level.

setup.cfg holds the rest of the metadata; declarative config cannot combine ``find:`` with extra packages
mapped through ``package_dir``, so the list is made here and new subpackages are picked up on their own.
"""

from setuptools import find_namespace_packages, setup

setup(packages=find_namespace_packages(include=["cbt_llm", "cbt_llm.*"], exclude=["*.__pycache__"])
      + ["cbt_llm.dataset_cards", "cbt_llm.model_cards"])
