"""Writes the example GeoIP databases beside this script (documentation
ranges only: 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32),
in MaxMind's GeoLite2 layout. Needs PyPI's mmdb-writer:

    python3 pipelines/geoip/make.py
"""
import pathlib
from netaddr import IPSet
from mmdb_writer import MMDBWriter

here = pathlib.Path(__file__).parent
city = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type='GeoLite2-City',
                  languages=['en'], description='Spillway example (documentation ranges)', int_type='u32')
for net, country, name in [('192.0.2.0/24', 'FR', 'Paris'), ('198.51.100.0/24', 'DE', 'Berlin'),
                           ('203.0.113.0/24', 'JP', 'Tokyo'), ('2001:db8::/32', 'NL', 'Amsterdam')]:
    city.insert_network(IPSet([net]), {'country': {'iso_code': country}, 'city': {'names': {'en': name}}})
city.to_db_file(str(here / 'example-city.mmdb'))
asn = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type='GeoLite2-ASN',
                 description='Spillway example (documentation ranges)', int_type='u32')
for net, number, org in [('192.0.2.0/24', 64496, 'Example Transit'), ('198.51.100.0/24', 64497, 'Example Access'),
                         ('2001:db8::/32', 64498, 'Example Six')]:
    asn.insert_network(IPSet([net]), {'autonomous_system_number': number, 'autonomous_system_organization': org})
asn.to_db_file(str(here / 'example-asn.mmdb'))
