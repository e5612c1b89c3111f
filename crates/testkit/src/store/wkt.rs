//! WKT text to the WKB bytes a GEOMETRY column stores, as TDengine converts it
//! (`doGeomFromText` in `source/libs/geometry/src/geosWrapper.c`): the text must match
//! TDengine's WKT pattern (POINT, LINESTRING, POLYGON, MULTIPOINT, MULTILINESTRING,
//! MULTIPOLYGON, each possibly EMPTY; case-insensitive), GEOS's WKT reader must accept it
//! (a LINESTRING has 0 or at least 2 points, a polygon ring is closed with at least 4), and
//! GEOS's WKB writer writes it: little-endian, 2-D, `POINT EMPTY` as a point of two NaNs.
//!
//! Divergences (not checked against the GEOS version TDengine bundles): Z/M coordinates are
//! refused rather than written; `GEOMETRYCOLLECTION` is refused (TDengine's pattern only
//! knows `GEOCOLLECTION`, which GEOS does not read, so no collection gets through there
//! either).

struct P<'a> {
    s: &'a [u8],
    i: usize,
    out: Vec<u8>,
}

impl P<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn word(&mut self) -> String {
        self.ws();
        let start = self.i;
        while self.s.get(self.i).is_some_and(|c| c.is_ascii_alphabetic()) {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).to_ascii_uppercase()
    }

    fn empty(&mut self) -> bool {
        let save = self.i;
        if self.word() == "EMPTY" {
            return true;
        }
        self.i = save;
        false
    }

    fn number(&mut self) -> Option<f64> {
        self.ws();
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|c| c.is_ascii_digit() || b"+-.eE".contains(c))
        {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i])
            .ok()?
            .parse()
            .ok()
    }

    fn header(&mut self, ty: u32) {
        self.out.push(1);
        self.out.extend_from_slice(&ty.to_le_bytes());
    }

    fn u32(&mut self, n: usize) -> Option<()> {
        self.out
            .extend_from_slice(&u32::try_from(n).ok()?.to_le_bytes());
        Some(())
    }

    /// `x y` (2-D only).
    fn coord(&mut self) -> Option<(f64, f64)> {
        let x = self.number()?;
        let y = self.number()?;
        Some((x, y))
    }

    fn put(&mut self, (x, y): (f64, f64)) {
        self.out.extend_from_slice(&x.to_le_bytes());
        self.out.extend_from_slice(&y.to_le_bytes());
    }

    /// `( x y, x y, … )` or `EMPTY`: the points.
    fn coords(&mut self) -> Option<Vec<(f64, f64)>> {
        if self.empty() {
            return Some(Vec::new());
        }
        if !self.eat(b'(') {
            return None;
        }
        let mut v = vec![self.coord()?];
        while self.eat(b',') {
            v.push(self.coord()?);
        }
        self.eat(b')').then_some(v)
    }

    fn line_body(&mut self) -> Option<()> {
        let pts = self.coords()?;
        if pts.len() == 1 {
            return None;
        }
        self.u32(pts.len())?;
        for p in pts {
            self.put(p);
        }
        Some(())
    }

    fn polygon_body(&mut self) -> Option<()> {
        let rings = self.list(|p| p.coords())?;
        self.u32(rings.len())?;
        for r in rings {
            let closed = r.first() == r.last();
            if !r.is_empty() && (r.len() < 4 || !closed) {
                return None;
            }
            self.u32(r.len())?;
            for p in r {
                self.put(p);
            }
        }
        Some(())
    }

    /// `( item, item, … )` or `EMPTY`.
    fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        if self.empty() {
            return Some(Vec::new());
        }
        if !self.eat(b'(') {
            return None;
        }
        let mut v = vec![item(self)?];
        while self.eat(b',') {
            v.push(item(self)?);
        }
        self.eat(b')').then_some(v)
    }

    fn geometry(&mut self) -> Option<()> {
        match self.word().as_str() {
            "POINT" => {
                self.header(1);
                if self.empty() {
                    self.put((f64::NAN, f64::NAN));
                } else {
                    if !self.eat(b'(') {
                        return None;
                    }
                    let c = self.coord()?;
                    self.put(c);
                    if !self.eat(b')') {
                        return None;
                    }
                }
                Some(())
            }
            "LINESTRING" => {
                self.header(2);
                self.line_body()
            }
            "POLYGON" => {
                self.header(3);
                self.polygon_body()
            }
            "MULTIPOINT" => {
                self.header(4);
                // Points bare (`1 2, 3 4`) or parenthesised (`(1 2), (3 4)`).
                let pts = self.list(|p| {
                    if p.eat(b'(') {
                        let c = p.coord()?;
                        p.eat(b')').then_some(c)
                    } else {
                        p.coord()
                    }
                })?;
                self.u32(pts.len())?;
                for c in pts {
                    self.header(1);
                    self.put(c);
                }
                Some(())
            }
            "MULTILINESTRING" => {
                self.header(5);
                self.multi(2, Self::line_body)
            }
            "MULTIPOLYGON" => {
                self.header(6);
                self.multi(3, Self::polygon_body)
            }
            _ => None,
        }
    }

    /// A multi-geometry's parts, each written with its own header (WKB).
    fn multi(&mut self, part: u32, body: fn(&mut Self) -> Option<()>) -> Option<()> {
        let count_at = self.out.len();
        self.u32(0)?;
        if self.empty() {
            return Some(());
        }
        if !self.eat(b'(') {
            return None;
        }
        let mut n = 0usize;
        loop {
            self.header(part);
            body(self)?;
            n += 1;
            if !self.eat(b',') {
                break;
            }
        }
        if !self.eat(b')') {
            return None;
        }
        let n = u32::try_from(n).ok()?.to_le_bytes();
        self.out[count_at..count_at + 4].copy_from_slice(&n);
        Some(())
    }
}

/// The WKB of a WKT text, or `None` when TDengine would refuse it.
pub fn wkt_to_wkb(text: &str) -> Option<Vec<u8>> {
    let mut p = P {
        s: text.as_bytes(),
        i: 0,
        out: Vec::new(),
    };
    p.geometry()?;
    p.ws();
    (p.i == p.s.len()).then_some(p.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn le(v: &[f64]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn every_kind_and_empty() {
        let mut point = vec![1, 1, 0, 0, 0];
        point.extend(le(&[1.0, -2.5]));
        assert_eq!(wkt_to_wkb("point( 1 -2.5 )"), Some(point.clone()));
        let e = wkt_to_wkb("POINT EMPTY").unwrap();
        assert_eq!(e.len(), 21);
        assert!(f64::from_le_bytes(e[5..13].try_into().unwrap()).is_nan());
        let mut line = vec![1, 2, 0, 0, 0, 2, 0, 0, 0];
        line.extend(le(&[0.0, 0.0, 1.0, 1e3]));
        assert_eq!(wkt_to_wkb("LINESTRING (0 0, 1 1e3)"), Some(line));
        assert_eq!(
            wkt_to_wkb("LINESTRING EMPTY"),
            Some(vec![1, 2, 0, 0, 0, 0, 0, 0, 0])
        );
        assert!(wkt_to_wkb("LINESTRING (0 0)").is_none(), "one point");
        let poly =
            wkt_to_wkb("POLYGON ((0 0, 1 0, 1 1, 0 0), (0.1 0.1, 0.2 0.1, 0.2 0.2, 0.1 0.1))")
                .unwrap();
        assert_eq!(&poly[..9], &[1, 3, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(poly.len(), 9 + 2 * (4 + 4 * 16));
        assert!(
            wkt_to_wkb("POLYGON ((0 0, 1 0, 1 1, 0 1))").is_none(),
            "not closed"
        );
        let mp = wkt_to_wkb("MULTIPOINT ((1 -2.5), (1 -2.5))").unwrap();
        assert_eq!(&mp[..9], &[1, 4, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(&mp[9..], [point.clone(), point].concat());
        assert_eq!(
            wkt_to_wkb("MULTIPOINT (1 -2.5, 3 4)").unwrap().len(),
            9 + 42
        );
        let ml = wkt_to_wkb("MULTILINESTRING ((0 0, 1 1), (2 2, 3 3, 4 4))").unwrap();
        assert_eq!(&ml[..9], &[1, 5, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(ml.len(), 9 + (9 + 32) + (9 + 48));
        let mpoly = wkt_to_wkb("MULTIPOLYGON (((0 0, 1 0, 1 1, 0 0)), EMPTY)").unwrap();
        assert_eq!(&mpoly[..9], &[1, 6, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(
            wkt_to_wkb("multipolygon empty"),
            Some(vec![1, 6, 0, 0, 0, 0, 0, 0, 0])
        );
        for bad in [
            "POINT (1)",
            "POINT Z (1 2 3)",
            "GEOMETRYCOLLECTION (POINT (1 2))",
            "CIRCLE (1 2)",
            "POINT (1 2) x",
            "",
        ] {
            assert!(wkt_to_wkb(bad).is_none(), "{bad}");
        }
    }
}
