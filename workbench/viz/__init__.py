"""Plotly figures shared by notebooks and apps."""
