"""The package's version, in a module of its own so that what records it (the run record) need not import the
package's top level."""

__version__ = "0.1.0"
