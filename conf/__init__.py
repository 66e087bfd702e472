"""emoe-run's config tree; importing it stores the structured configs its presets pull in."""

from emoe_cli.config.schema import register_schemas

register_schemas()
