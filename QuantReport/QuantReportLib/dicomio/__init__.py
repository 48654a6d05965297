"""The DICOM file layer that every other part of QuantReport uses.

Nothing above this package opens a DICOM file with pydicom on its own:
headers are read strictly by :mod:`.reading`, pixel data decoded by
:mod:`.pixels`, files written atomically by :mod:`.writing`, encoded items
read and written by :mod:`.rawitems`; :mod:`.uids` checks UIDs before they
name anything.
"""
