"""Prompt templates live here as plain text files, one per (task, mode).

``{request}`` is replaced by the user's prompt or editing instruction, and each
``<image>`` marker is where the next image goes in the chat message.
"""
