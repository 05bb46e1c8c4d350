"""The plugin base class, the plugin logger and the host process that runs a plugin for openhpo."""
