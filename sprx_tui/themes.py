"""The app's two themes: a calm default and a high-contrast one (every colour set, so contrast can be tested)."""

from __future__ import annotations

from textual.theme import Theme

# Colours live here, never in TCSS: stylesheets use only theme variables ($primary, $error, ...).
SPRX_DEFAULT = Theme(
    name="sprx",
    primary="#5AA9E6",  # a softened NHS light blue: readable on the dark background, not shouting
    secondary="#8FBFAE",
    accent="#E9B872",
    warning="#E9B872",
    error="#F08A80",
    success="#7CC49A",
    foreground="#E4EBF0",
    background="#15212B",
    surface="#1C2A36",
    panel="#253644",
    dark=True,
)

SPRX_HIGH_CONTRAST = Theme(
    name="sprx-high-contrast",
    primary="#FFFF00",
    secondary="#00FFFF",
    accent="#FFFF00",
    warning="#FFB000",
    error="#FF6B6B",
    success="#00FF7F",
    foreground="#FFFFFF",
    background="#000000",
    surface="#000000",
    panel="#1F1F1F",
    dark=True,
    luminosity_spread=0.0,
    text_alpha=1.0,
    variables={
        "text-muted": "#FFFFFF",
        "foreground-muted": "#FFFFFF",
        "border-blurred": "#BFBFBF",
        "block-cursor-background": "#FFFF00",
        "block-cursor-foreground": "#000000",
        "block-cursor-blurred-background": "#FFFFFF 30%",
        "footer-key-foreground": "#FFFF00",
        "input-selection-background": "#FFFF00 40%",
    },
)

SPRX_NO_COLOR = Theme(
    name="sprx-no-color",
    primary="#FFFFFF",
    secondary="#FFFFFF",
    accent="#FFFFFF",
    warning="#FFFFFF",
    error="#FFFFFF",
    success="#FFFFFF",
    foreground="#FFFFFF",
    background="#000000",
    surface="#000000",
    panel="#262626",
    dark=True,
    luminosity_spread=0.0,
    text_alpha=1.0,
    variables={
        "text-muted": "#D9D9D9",
        "foreground-muted": "#D9D9D9",
        "border": "#FFFFFF",
        "border-blurred": "#8C8C8C",
        # The selected row or option: reversed (black on white) when focused, white on dark grey when not.
        "block-cursor-background": "#FFFFFF",
        "block-cursor-foreground": "#000000",
        "block-cursor-text-style": "bold",
        "block-cursor-blurred-background": "#4D4D4D",
        "block-cursor-blurred-foreground": "#FFFFFF",
        "block-cursor-blurred-text-style": "bold",
        "block-hover-background": "#333333",
        "footer-key-foreground": "#FFFFFF",
        "input-selection-background": "#FFFFFF 40%",
        "button-color-foreground": "#000000",
    },
)
"""Chosen whenever NO_COLOR is set. Textual then draws every colour as its grey (Monochrome), which made
the default theme's selection white on light grey (1.9:1). This one is black, white and greys only, so
what is selected or focused reads by contrast and weight: reversed and bold when focused."""

THEMES = {"default": SPRX_DEFAULT, "high_contrast": SPRX_HIGH_CONTRAST}


def theme_name(setting: str) -> str:
    """The registered Textual theme name for a config value ("default" / "high_contrast")."""
    return THEMES.get(setting, SPRX_DEFAULT).name


def setting_for(theme: str) -> str:
    for setting, t in THEMES.items():
        if t.name == theme:
            return setting
    return "default"
