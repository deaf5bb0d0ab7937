"""Helpers of the reliability suite: a test kernel, hostile frames, server processes, figures."""
