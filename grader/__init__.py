"""The instructor side of the ConvNet Workbook: release, autograde, feedback, export, check."""
