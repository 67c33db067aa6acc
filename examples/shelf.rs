//! A library catalogue on a shelf: books, members and loans are persistent objects that refer
//! to each other by `PRef`. Every run reopens the shelf (instantly: nothing is read), lends
//! and returns books, shows how few objects that loaded, then audits the whole catalogue.
//!
//! `cargo run --release --example shelf [PATH] [ROUNDS]` (default `target/shelf-demo`, 200);
//! run it again to continue where the last run stopped. Kill it at any moment: every
//! acknowledged loan is on the shelf.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use stmx::prelude::*;
use stmx::shelf::{PRef, PVar, Shelf};

const BOOKS: usize = 2_000;
const MEMBERS: usize = 100;
const COPIES: u32 = 3;

#[derive(Clone, Serialize, Deserialize)]
struct Book {
    title: String,
    copies: u32,
    available: u32,
}

#[derive(Clone, Serialize, Deserialize)]
struct Member {
    name: String,
    loans: Vec<PRef<Loan>>,
}

#[derive(Clone, Serialize, Deserialize)]
struct Loan {
    book: PRef<Book>,
    member: PRef<Member>,
    number: u64,
}

/// The root object: where everything else can be found.
#[derive(Clone, Serialize, Deserialize)]
struct Catalogue {
    books: Vec<PRef<Book>>,
    members: Vec<PRef<Member>>,
    loans_made: u64,
    active_loans: u64,
}

fn create(shelf: &Shelf) -> Result<PVar<Catalogue>, stmx::shelf::Error> {
    shelf.atomically(|tx| {
        let books = (0..BOOKS)
            .map(|i| {
                let book = Book {
                    title: format!("Volume {i}"),
                    copies: COPIES,
                    available: COPIES,
                };
                Ok(shelf
                    .create_with_id_in(tx, &format!("book-{i}"), book)?
                    .pref())
            })
            .collect::<StmResult<Vec<_>>>()?;
        let members = (0..MEMBERS)
            .map(|i| {
                let member = Member {
                    name: format!("member {i}"),
                    loans: Vec::new(),
                };
                Ok(shelf
                    .create_with_id_in(tx, &format!("member-{i}"), member)?
                    .pref())
            })
            .collect::<StmResult<Vec<_>>>()?;
        let catalogue = Catalogue {
            books,
            members,
            loans_made: 0,
            active_loans: 0,
        };
        shelf.create_with_id_in(tx, "catalogue", catalogue)
    })
}

/// Lends `book` to `member`, or returns the member's oldest loan if the book is out.
fn lend_or_return(
    shelf: &Shelf,
    tx: &mut Transaction,
    catalogue: &PVar<Catalogue>,
    book: usize,
    member: usize,
) -> StmResult<&'static str> {
    let cat = catalogue.read(tx)?;
    let member_var = cat.members[member].resolve(tx, shelf)?;
    let book_var = cat.books[book].resolve(tx, shelf)?;
    if book_var.read(tx)?.available > 0 {
        book_var.modify(tx, |b| Book {
            available: b.available - 1,
            ..b
        })?;
        let loan = Loan {
            book: book_var.pref(),
            member: member_var.pref(),
            number: cat.loans_made,
        };
        let loan = shelf.create_in(tx, loan)?;
        member_var.modify(tx, |mut m| {
            m.loans.push(loan.pref());
            m
        })?;
        catalogue.write(
            tx,
            Catalogue {
                loans_made: cat.loans_made + 1,
                active_loans: cat.active_loans + 1,
                ..cat
            },
        )?;
        return Ok("lent");
    }
    let mut m = member_var.read(tx)?;
    if m.loans.is_empty() {
        return Ok("waited");
    }
    let loan_ref = m.loans.remove(0);
    let loan = loan_ref.resolve(tx, shelf)?.read(tx)?;
    loan.book.resolve(tx, shelf)?.modify(tx, |b| Book {
        available: b.available + 1,
        ..b
    })?;
    shelf.delete(tx, loan_ref.pid())?;
    member_var.write(tx, m)?;
    catalogue.write(
        tx,
        Catalogue {
            active_loans: cat.active_loans - 1,
            ..cat
        },
    )?;
    Ok("returned")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "target/shelf-demo".into());
    let rounds: u64 = args.next().map_or(Ok(200), |r| r.parse())?;

    let started = Instant::now();
    let shelf = Shelf::open(format!("{dir}/library.shelf"))?;
    println!("opened {dir}/library.shelf in {:?}", started.elapsed());
    let catalogue = match shelf.fetch::<Catalogue>("catalogue") {
        Ok(catalogue) => catalogue,
        Err(stmx::shelf::Error::NotFound { .. }) => {
            println!("new shelf: creating {BOOKS} books and {MEMBERS} members");
            create(&shelf)?
        }
        Err(e) => return Err(e.into()),
    };
    let before = shelf.stats();

    let mut seed = shelf.atomically(|tx| catalogue.read_with(tx, |c| c.loans_made))? + 1;
    let (mut lent, mut returned) = (0, 0);
    for _ in 0..rounds {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let (book, member) = ((seed >> 33) as usize % 40, (seed >> 13) as usize % MEMBERS);
        match shelf.atomically(|tx| lend_or_return(&shelf, tx, &catalogue, book, member))? {
            "lent" => lent += 1,
            "returned" => returned += 1,
            _ => {}
        }
    }
    let after = shelf.stats();
    println!(
        "{rounds} rounds: {lent} loans, {returned} returns; loaded {} objects lazily \
         ({} store lookups, {} durable writes for {} transactions)",
        after.loads - before.loads,
        after.store_reads - before.store_reads,
        after.syncs - before.syncs,
        after.batches - before.batches,
    );

    // The audit reads every book and every member's loans: this loads the whole catalogue.
    let (copies, available, active, on_loan) = shelf.atomically(|tx| {
        let cat = catalogue.read(tx)?;
        let (mut copies, mut available) = (0, 0);
        for book in &cat.books {
            let b = book.resolve(tx, &shelf)?.read(tx)?;
            copies += u64::from(b.copies);
            available += u64::from(b.available);
        }
        let mut on_loan = 0;
        for member in &cat.members {
            on_loan += member
                .resolve(tx, &shelf)?
                .read_with(tx, |m| m.loans.len() as u64)?;
        }
        Ok((copies, available, cat.active_loans, on_loan))
    })?;
    println!(
        "audit: {copies} copies = {available} on the shelves + {active} on loan \
         ({on_loan} in members' lists); {} objects loaded in all",
        shelf.stats().loads
    );
    if copies != available + active || active != on_loan {
        return Err("the catalogue does not add up".into());
    }
    println!("OK: every copy is accounted for");
    Ok(())
}
