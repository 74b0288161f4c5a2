"""The embedded demo: a small openaimodel-family U-Net, its training and sampling."""
